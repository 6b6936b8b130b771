#!/bin/sh
# Octopus health check, for cron, systemd timers and monitoring agents.
#
#   scripts/health_check.sh [--require-agents N] [--timeout S] [--quiet] [URL]
#
# Asks GET URL/health (public: no token) and prints one line:
#   octopus http://127.0.0.1:8000: ok, database ok, 2 pending, 1 active, 3 running, 3 agent(s) online
# URL defaults to $OCTOPUS_SERVER_URL, else http://127.0.0.1:8000.
#
# Exit codes:
#   0  healthy
#   1  unreachable: no answer, a timeout, or not an Octopus /health reply
#   2  unhealthy: the server answered but its database is unusable (503)
#   3  fewer than N agents online (only with --require-agents N)
#   64 bad usage
# Uses curl when present, else python3 (both with a timeout); needs no TTY.
set -u

URL="${OCTOPUS_SERVER_URL:-http://127.0.0.1:8000}"
TIMEOUT=5
REQUIRE=0
QUIET=0

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 64; }

while [ $# -gt 0 ]; do
    case "$1" in
        --require-agents) [ $# -ge 2 ] || usage; REQUIRE="$2"; shift 2 ;;
        --timeout) [ $# -ge 2 ] || usage; TIMEOUT="$2"; shift 2 ;;
        --quiet|-q) QUIET=1; shift ;;
        -h|--help) usage ;;
        -*) echo "health_check: unknown option $1" >&2; usage ;;
        *) URL="$1"; shift ;;
    esac
done
case "$REQUIRE" in ''|*[!0-9]*) echo "health_check: --require-agents needs a whole number" >&2; exit 64 ;; esac
case "$TIMEOUT" in ''|*[!0-9.]*) echo "health_check: --timeout needs a number of seconds" >&2; exit 64 ;; esac
URL="${URL%/}"

say() { [ "$QUIET" = 1 ] || printf '%s\n' "$*"; }

# fetch: prints "<http status> <body>" on one line; the status is 000 when no answer came.
fetch() {
    if command -v curl >/dev/null 2>&1; then
        body="$(curl -sS --max-time "$TIMEOUT" -w '\n%{http_code}' "$URL/health" 2>/dev/null)"
        code="$(printf '%s' "$body" | tail -n 1)"
        printf '%s %s\n' "${code:-000}" "$(printf '%s' "$body" | sed '$d' | tr -d '\n')"
    else
        python3 - "$URL/health" "$TIMEOUT" <<'EOF'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        code, body = r.status, r.read()
except urllib.error.HTTPError as e:
    code, body = e.code, e.read()
except Exception:
    code, body = 0, b""
print("%03d %s" % (code, body.decode("utf-8", "replace").replace("\n", "")))
EOF
    fi
}

# field NAME: a top-level string or number of the /health JSON (flat enough for sed).
field() {
    printf '%s' "$BODY" | sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\)\"\{0,1\}.*/\1/p"
}

REPLY="$(fetch)"
CODE="${REPLY%% *}"
[ -n "$CODE" ] || CODE=000
BODY="${REPLY#* }"
STATUS="$(field status)"
DATABASE="$(field database)"

if [ "$CODE" = 000 ] || [ -z "$STATUS" ]; then
    say "octopus $URL: UNREACHABLE (no /health answer within ${TIMEOUT}s; HTTP $CODE)"
    exit 1
fi
if [ "$CODE" != 200 ] || [ "$STATUS" != ok ]; then
    say "octopus $URL: UNHEALTHY (HTTP $CODE, database ${DATABASE:-unknown})"
    exit 2
fi
AGENTS="$(field agents_online)"
LINE="octopus $URL: ok, database $DATABASE, $(field pending) pending, $(field active) active, $(field running) running, ${AGENTS:-0} agent(s) online"
if [ "${AGENTS:-0}" -lt "$REQUIRE" ]; then
    say "$LINE: NOT ENOUGH AGENTS (need $REQUIRE)"
    exit 3
fi
say "$LINE"
exit 0
