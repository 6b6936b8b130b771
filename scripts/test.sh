#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: the one command README gives.
#
#   scripts/test.sh [pytest arguments...]
#
# Creates (or reuses) a venv at .build/test-venv with the project installed
# editable plus its test extras, builds octopus.pyz (tests/test_zipapp.py runs
# it under each pyenv CPython 3.9-3.13), then runs pytest from that venv.
# Needs python3 with venv and pip, and PyPI on the first run.
# Environment knobs: PYTHON (interpreter for the venv, default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="$ROOT/.build/test-venv"
VPY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
log() { printf 'test.sh: %s\n' "$*" >&2; }

mkdir -p "$ROOT/.build"
if ! "$VPY" -c 'import sys' >/dev/null 2>&1; then
    log "creating ${VENV#"$ROOT"/}"
    "$PYTHON" -m venv --clear "$VENV"
fi

# The editable install only needs redoing when pyproject.toml changes (source
# edits are live), so remember what it was installed from and skip pip when
# nothing changed: a rerun costs no network and no time.
want="$(cat pyproject.toml "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
have="$(cat "$VENV/.installed" 2>/dev/null || true)"
if [ "$want" != "$have" ] || ! "$VPY" -c 'import octopus, pytest' >/dev/null 2>&1; then
    log "installing the project (editable) and its test dependencies"
    "$VPY" -m pip install -q --disable-pip-version-check -e '.[test]'
    printf '%s\n' "$want" >"$VENV/.installed"
fi

bash ./build_zipapp.sh

export PATH="$VENV/bin:$PATH"
exec "$VPY" -m pytest "$@"
