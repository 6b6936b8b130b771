#!/usr/bin/env bash
# Build octopus.pyz at the repository root: one shiv zipapp that runs on
# CPython 3.9-3.13, Linux x86_64 and aarch64.
#
# Needs only python3 (with venv and pip) and access to PyPI.  Everything goes
# under .build/ (git-ignored):
#   .build/build-venv/     the build tools (shiv, setuptools), never the system Python
#   .build/wheels/         downloaded wheels, kept between builds
#   .build/src/            a clean copy of the project sources, rebuilt every time
#   .build/site-packages/  what goes into the zipapp, rebuilt every time
#
# How one file covers every Python and both architectures: the project,
# falcon (its pure-Python wheel), waitress, cronsim and tzdata are pure Python; apsw is the only
# compiled dependency, and its wheels for cp39..cp313 x {x86_64, aarch64} are
# all unpacked into the same apsw/ folder.  Their extension modules carry the
# interpreter and platform in their names (__init__.cpython-312-aarch64-linux-gnu.so),
# so each Python picks its own.
#
# Environment knobs: PYTHON (interpreter for the build venv, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# ---- pinned inputs ---------------------------------------------------------
SHIV_VERSION=1.0.8
SETUPTOOLS_VERSION=80.9.0      # builds the project (no build isolation: offline rebuilds)
FALCON_VERSION=4.4.0
WAITRESS_VERSION=3.0.2
APSW_VERSION=3.51.0.0          # newest apsw with cp39 wheels
CRONSIM_VERSION=2.6            # newest cronsim that runs on Python 3.9
TZDATA_VERSION=2025.2
PY_MINORS="9 10 11 12 13"
ARCHES="x86_64 aarch64"
APSW_PLATFORM_PREFIX=manylinux_2_28   # glibc >= 2.28 (Debian 10+, Ubuntu 18.10+, RHEL 8+)

BUILD="$ROOT/.build"
VENV="$BUILD/build-venv"
WHEELS="$BUILD/wheels"
SRC="$BUILD/src"
SITE="$BUILD/site-packages"
OUT="$ROOT/octopus.pyz"
PYTHON="${PYTHON:-python3}"

start=$SECONDS
log() { printf 'build_zipapp: %s\n' "$*" >&2; }

mkdir -p "$BUILD" "$WHEELS"

# One build at a time (scripts/test.sh and a hand-run build share .build/).
exec 9>"$BUILD/build.lock"
flock 9

# ---- build venv --------------------------------------------------------------
STAMP="shiv==$SHIV_VERSION setuptools==$SETUPTOOLS_VERSION"
VPY="$VENV/bin/python"
if ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
    log "creating build venv in ${VENV#"$ROOT"/}"
    "$PYTHON" -m venv --clear "$VENV"
fi
if [ "$(cat "$VENV/.stamp" 2>/dev/null || true)" != "$STAMP" ]; then
    log "installing $STAMP into the build venv"
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q --disable-pip-version-check $STAMP
    printf '%s' "$STAMP" >"$VENV/.stamp"
fi
PIP=("$VPY" -m pip --disable-pip-version-check)

# ---- wheels (cached) ---------------------------------------------------------
# fetch GLOB PIP-DOWNLOAD-ARGS...: download into the cache unless a wheel
# matching GLOB is already there.  Downloads go to a temporary folder first so
# an interrupted download never leaves a half wheel in the cache.
fetch() {
    local glob="$1"; shift
    if compgen -G "$WHEELS/$glob" >/dev/null; then
        return 0
    fi
    log "downloading $*"
    local tmp
    tmp="$(mktemp -d "$BUILD/dl.XXXXXX")"
    "${PIP[@]}" download -q --no-deps --only-binary=:all: --dest "$tmp" "$@"
    mv "$tmp"/*.whl "$WHEELS"/
    rmdir "$tmp"
    if ! compgen -G "$WHEELS/$glob" >/dev/null; then
        log "ERROR: downloaded wheel does not match $glob"
        exit 1
    fi
}

PURE=(--platform any --python-version 3.9 --implementation py --abi none)
fetch "falcon-$FALCON_VERSION-py3-none-any.whl" "${PURE[@]}" "falcon==$FALCON_VERSION"
fetch "waitress-$WAITRESS_VERSION-py3-none-any.whl" "${PURE[@]}" "waitress==$WAITRESS_VERSION"
fetch "cronsim-$CRONSIM_VERSION-py3-none-any.whl" "${PURE[@]}" "cronsim==$CRONSIM_VERSION"
fetch "tzdata-$TZDATA_VERSION-py2.py3-none-any.whl" "${PURE[@]}" "tzdata==$TZDATA_VERSION"
for x in $PY_MINORS; do
    for arch in $ARCHES; do
        fetch "apsw-$APSW_VERSION-cp3$x-cp3$x-*$arch*.whl" \
            --python-version "3.$x" --implementation cp --abi "cp3$x" \
            --platform "${APSW_PLATFORM_PREFIX}_$arch" "apsw==$APSW_VERSION"
    done
done

# ---- clean copy of the sources -----------------------------------------------
# Building straight from the work tree would leave build/ and *.egg-info there,
# and setuptools reuses a stale build/lib (files deleted from the tree would
# still be shipped).  So copy the tree's files (tracked plus untracked but not
# ignored, when this is a git work tree) to .build/src and build from there.
rm -rf "$SRC"
mkdir -p "$SRC"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf - | tar -xf - -C "$SRC"
else
    tar --exclude=./.git --exclude=./.build --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./octopus.pyz \
        -cf - . | tar -xf - -C "$SRC"
fi

# ---- staging site-packages (always fresh) ------------------------------------
rm -rf "$SITE"
mkdir -p "$SITE"

log "installing the project into ${SITE#"$ROOT"/}"
"${PIP[@]}" install -q --no-deps --no-build-isolation --no-compile --target "$SITE" "$SRC"

# Every wheel is unpacked (not pip-installed): they are only being staged for
# other interpreters and platforms.  The apsw wheels overlap only in
# apsw-*.dist-info/{RECORD,WHEEL}, which is harmless.
for whl in "$WHEELS"/falcon-"$FALCON_VERSION"-*.whl "$WHEELS"/waitress-"$WAITRESS_VERSION"-*.whl \
           "$WHEELS"/cronsim-"$CRONSIM_VERSION"-*.whl "$WHEELS"/tzdata-"$TZDATA_VERSION"-*.whl \
           "$WHEELS"/apsw-"$APSW_VERSION"-*.whl; do
    "$VPY" -m zipfile -e "$whl" "$SITE"
done

# Not needed at run time.  direct_url.json records the build folder's path,
# which would make the pyz differ between checkouts.
rm -rf "${SITE:?}/bin" "$SITE/apsw/tests" "$SITE"/octopus-*.dist-info/direct_url.json
sed -i -e '/^\.\.\/\.\.\/bin\//d' -e '/direct_url\.json,/d' "$SITE"/octopus-*.dist-info/RECORD
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- check that the package data landed inside the package -------------------
fail=0
[ -f "$SITE/octopus/__main__.py" ] || { log "ERROR: octopus/__main__.py missing from the staged package"; fail=1; }
check_shipped() {  # check_shipped SRC_DIR PKG_DIR FIND-ARGS...: every matching file of SRC_DIR is in PKG_DIR
    local srcdir="$1" pkgdir="$2"; shift 2
    [ -d "$SRC/$srcdir" ] || return 0
    while IFS= read -r -d '' f; do
        rel="${f#"$SRC/$srcdir"/}"
        if [ ! -f "$SITE/$pkgdir/$rel" ]; then
            log "ERROR: $srcdir/$rel was not installed as $pkgdir/$rel (check [tool.setuptools] in pyproject.toml)"
            fail=1
        fi
    done < <(find "$SRC/$srcdir" -name __pycache__ -prune -o -type f "$@" -print0)
}
check_shipped static octopus/static
check_shipped plugins octopus/bundled_plugins -name '*.py'
check_shipped octopus/store/migrations octopus/store/migrations -name '*.sql'
[ "$fail" = 0 ] || exit 1

# ---- strip debug info from the extension modules ------------------------------
strip_arch() {  # strip_arch ARCH TOOL
    local arch="$1" tool="$2" sos=()
    while IFS= read -r -d '' f; do sos+=("$f"); done \
        < <(find "$SITE" -name "*-$arch-linux-gnu.so" -print0)
    [ "${#sos[@]}" -gt 0 ] || return 0
    if command -v "$tool" >/dev/null 2>&1; then
        "$tool" --strip-debug "${sos[@]}"
    else
        log "note: $tool not found, $arch extension modules left unstripped (bigger pyz; apt-get install ${3:-binutils})"
    fi
}
strip_arch x86_64 strip binutils
strip_arch aarch64 aarch64-linux-gnu-strip binutils-aarch64-linux-gnu
others="$(find "$SITE" -name '*.so' ! -name '*-x86_64-linux-gnu.so' ! -name '*-aarch64-linux-gnu.so')"
[ -z "$others" ] || log "note: extension modules of another platform left unstripped: $others"

# ---- zipapp ------------------------------------------------------------------
# With --site-packages and no package arguments shiv does not run pip; it zips
# the folder as is.  --reproducible: fixed timestamps, so the same inputs give
# the same bytes (and the same build id, so ~/.shiv extractions are reused).
log "building ${OUT#"$ROOT"/} with shiv"
rm -f "$BUILD/octopus.pyz.tmp"
"$VENV/bin/shiv" --site-packages "$SITE" --compressed --reproducible \
    -p '/usr/bin/env python3' -e octopus.__main__:main -o "$BUILD/octopus.pyz.tmp"
mv -f "$BUILD/octopus.pyz.tmp" "$OUT"

size=$(stat -c %s "$OUT")
log "$(printf 'built %s: %d bytes (%.1f MB) in %ds' "${OUT#"$ROOT"/}" "$size" "$(echo "$size" | awk '{print $1/1000000}')" $((SECONDS - start)))"
