# lib.sh — what the shell test suites share: a scratch directory, the
# pass/fail counters and their closing line. Source it with the suite's name:
#   . test/lib.sh test_cli "$@"     (sets SHARED, M and T; cd to the repo root)
set -u
SUITE=$1
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED=${2:-../shared}
BIN=${BIN:-.}            # where runq, run and export are (make test-asan points it at build/asan)
M=$SHARED/models
T=$(mktemp -d "/tmp/edge-$SUITE-XXXXXX")
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok()   { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }
# same NAME FILE1 FILE2: the two files are byte-identical
same() { if cmp -s "$2" "$3"; then ok; else fail "$1: $2 and $3 differ"; diff "$2" "$3" | head -5 >&2; fi; }
# expect_error NAME PATTERN COMMAND...: non-zero exit (not a signal), stderr matches PATTERN
expect_error() {
    local name=$1 pattern=$2; shift 2
    "$@" >"$T/out" 2>"$T/err" </dev/null; local status=$?
    if [ $status -eq 0 ]; then fail "$name: exit 0, expected an error"; return; fi
    if [ $status -gt 128 ]; then fail "$name: killed by signal $((status - 128)): $(cat "$T/err")"; return; fi
    if ! grep -Eq -- "$pattern" "$T/err"; then fail "$name: stderr lacks /$pattern/: $(cat "$T/err")"; return; fi
    if [ "$(wc -l <"$T/err")" -gt 3 ]; then fail "$name: more than a clear message: $(cat "$T/err")"; return; fi
    ok
}
# the closing line every suite ends with, and its exit status
summary() { echo "$SUITE: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
# python_with MODULE PACKAGE: a python3 that imports MODULE, after installing
# Debian's PACKAGE with apt-get when run as root; empty (and a loud SKIP is
# the caller's) when there is none.
python_with() {
    local module=$1 package=$2 py
    find() { for py in python3 /usr/bin/python3; do
                 command -v "$py" >/dev/null && "$py" -c "import $module" 2>/dev/null && { echo "$py"; return; }
             done; }
    py=$(find)
    if [ -z "$py" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "$SUITE: installing $package with apt-get" >&2
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package"; } \
            >"$T/apt.log" 2>&1 || tail -5 "$T/apt.log" >&2
        py=$(find)
    fi
    echo "$py"
}
# start_server NAME [flags]: ./server on $MODEL at a free port with $SERVER_THREADS threads (default 1),
# its stderr in $T/NAME.log; sets PID and URL
start_server() {
    local name=$1; shift
    "$BIN"/server "$MODEL" --port 0 -T "${SERVER_THREADS:-1}" "$@" 2>"$T/$name.log" &
    PID=$!
    local port=""
    for _ in $(seq 200); do
        port=$(grep -o '127\.0\.0\.1:[0-9]*' "$T/$name.log" 2>/dev/null | head -1 | cut -d: -f2)
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || { fail "$name: server did not start: $(cat "$T/$name.log")"; summary; }
    URL=http://127.0.0.1:$port
}
# stop_server NAME: SIGTERM, and it must exit 0 within 5 s
stop_server() {
    kill -TERM "$PID"
    local status
    for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$PID" 2>/dev/null; then fail "$1: still running 5 s after SIGTERM"; kill -KILL "$PID"; fi
    wait "$PID"; status=$?
    if [ $status -eq 0 ]; then ok; else fail "$1: exit status $status after SIGTERM: $(tail -3 "$T/$1.log")"; fi
}
