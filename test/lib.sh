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
# the closing line every suite ends with, and its exit status
summary() { echo "$SUITE: $passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit; }
