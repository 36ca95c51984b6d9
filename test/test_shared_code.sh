#!/usr/bin/env bash
# test_shared_code.sh — run.c and runq.c each compile alone, so the code they
# share is written twice. This holds the two copies together:
#   - the shared section (from the banner 'From here to "Command line"' to the
#     "Command line" banner: tokenizer, sampler, generate and chat) is the same
#     text in both files, line for line;
#   - any other function defined in both files is the same text too, unless
#     it is listed below with the reason it differs.
# Ends with "test_shared_code: N passed, N failed".
# It does not compile or run either file: it compares their text.
. "$(dirname "$0")/lib.sh" test_shared_code "$@"

# The functions both files define on purpose differently, and why.
declare -A different=(
    [die]="runq's names the program including it (PROGRAM_NAME) and returns to a fuzzer (FUZZING); run's is plain"
    [forward]="int4 kernels, batches and threads in runq; llama2.c's fp32 loops in run, the oracle"
    [forward_tokens]="runq batches a prompt MAX_BATCH tokens at a time; run feeds it one token at a time"
    [malloc_run_state]="runq sizes its caches to the run and quantizes activations; run keeps fp32 for the whole context"
    [free_transformer]="each frees its own run state"
    [rmsnorm]="the same arithmetic; run keeps llama2.c's text, line for line"
    [softmax]="the same arithmetic; run keeps llama2.c's text, line for line"
    [rope]="runq turns pairs from per-batch cos/sin tables; run computes each angle as llama2.c does"
    [tensor_table_offset]="the same offset; run.c reads only f32 checkpoints and keeps its loader self-contained"
    [usage]="each program's own flags"
    [main]="each program's own command line"
)

BANNER='// ----------------------------------------------------------------------------'
# shared_section FILE: the text from the shared banner to the "Command line" banner
shared_section() {
    awk -v banner="$BANNER" '
        prev == banner && /^\/\/ From here to "Command line"/ { on = 1; print prev }
        prev == banner && /^\/\/ Command line/ { on = 0 }
        on { print }
        { prev = $0 }' "$1"
}
# functions FILE: "name<TAB>first line" of each function defined outside the shared section
outside_section() {
    awk -v banner="$BANNER" '
        prev == banner && /^\/\/ From here to "Command line"/ { on = 1 }
        prev == banner && /^\/\/ Command line/ { on = 0 }
        !on { print }
        { prev = $0 }' "$1"
}
function_names() {
    outside_section "$1" | grep -E '^(static )?[A-Za-z_][A-Za-z0-9_ *]*[ *]([a-z_][a-z0-9_]*)\(' | grep -v ';$' |
        sed -E 's/^[^(]*[ *]([a-z_][a-z0-9_]*)\(.*/\1/' | sort -u
}
# function_text FILE NAME: the definition, from its first line to the closing brace at column 0
function_text() {
    outside_section "$1" | awk -v name="$2" '
        !on && $0 !~ /;$/ && match($0, "[ *]" name "\\(") && $0 ~ /^(static |int )/ { on = 1 }
        on { print } on && /^}/ { exit }'
}

shared_section runq.c >"$T/runq.shared"
shared_section run.c >"$T/run.shared"
if [ "$(wc -l <"$T/runq.shared")" -gt 1000 ]; then ok; else fail "runq.c's shared section is missing or short ($(wc -l <"$T/runq.shared") lines)"; fi
same "run.c's shared section (tokenizer, sampler, generate, chat) is runq.c's, line for line" "$T/runq.shared" "$T/run.shared"

function_names runq.c >"$T/runq.names"
function_names run.c >"$T/run.names"
for name in $(comm -12 "$T/runq.names" "$T/run.names"); do
    function_text runq.c "$name" >"$T/a"
    function_text run.c "$name" >"$T/b"
    if [ -n "${different[$name]:-}" ]; then
        if cmp -s "$T/a" "$T/b"; then fail "$name is listed as different but the two copies are the same text: drop it from the list"; else ok; fi
    elif cmp -s "$T/a" "$T/b"; then
        ok
    else
        fail "$name differs between runq.c and run.c: make the copies the same, or list it here with the reason"
        diff "$T/a" "$T/b" | head -10 >&2
    fi
done
for name in "${!different[@]}"; do
    grep -qx "$name" "$T/runq.names" && grep -qx "$name" "$T/run.names" && ok ||
        fail "$name is listed as different but is not defined in both files"
done
summary
