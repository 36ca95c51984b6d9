#!/usr/bin/env python3
"""render_chat.py — conversations rendered by a family's own Jinja chat
template, as transformers' apply_chat_template renders them: jinja2's
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the helpers
raise_exception and strftime_now, tojson, bos_token and eos_token from
tokenizer_config.json. Not a tokenizer: test_tokenizer (--chat-cases)
tokenizes the text as Hugging Face does and compares runq's rendering.
(No message spells a special token: Hugging Face would match it, runq keeps
messages text by design; test_tokenizer checks that apart.)

Usage: render_chat.py TOKENIZER_CONFIG_JSON NAME [--thinking]
Prints one line per case:
  NAME<TAB>GENERATION_PROMPT<TAB>THINKING<TAB>ROLE:HEX,...<TAB>HEX(rendered)
THINKING is 1 (enable_thinking true or left out), 0 (false); with --thinking
each case is rendered all three ways. A case the template refuses
(raise_exception) is left out and counted on stderr.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONVERSATIONS = [
    [("user", "Hi there!")],
    [("system", "You are terse."), ("user", "Hi there!")],
    [("user", "Hi there!"), ("assistant", "Hello."), ("user", "Name 3 colours.")],
    [("system", "You are terse."), ("user", "Hi there!"), ("assistant", "Hello."), ("user", "Name 3 colours.")],
    [("user", "Hi there!"), ("assistant", "Hello.")],
    [("system", "You are terse."), ("user", "Hi there!"), ("assistant", "Hello.")],
    [("user", "What is 2+2?"), ("assistant", "<think>\nSimple sum.\n</think>\n\n4."), ("user", "And 3+3?")],
    [("user", "What is 2+2?"), ("assistant", "<think>\nSimple sum.\n</think>\n\n4.")],
    [("system", "  Be brief.\n"), ("user", "  Padded message \n\n"), ("assistant", " padded reply\n"), ("user", "\tTabbed")],
    [("user", "Line one\nLine two\n\nCode:\n\tx = 1  # ok"), ("assistant", "Noted: café, 日本語, 🙂.")],
    [("system", ""), ("user", "An empty system prompt.")],
]


def token_text(config, key):
    value = config.get(key)
    return value.get("content", "") if isinstance(value, dict) else (value or "")


def main():
    path, name = sys.argv[1], sys.argv[2]
    thinking_modes = [None, False, True] if "--thinking" in sys.argv else [None]
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    source = config["chat_template"]

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    template = env.from_string(source)
    refused = 0
    for conversation in CONVERSATIONS:
        messages = [{"role": role, "content": content} for role, content in conversation]
        for generation_prompt in (True, False):
            for thinking in thinking_modes:
                extra = {} if thinking is None else {"enable_thinking": thinking}
                try:
                    text = template.render(messages=messages, add_generation_prompt=generation_prompt,
                                           bos_token=token_text(config, "bos_token"),
                                           eos_token=token_text(config, "eos_token"), **extra)
                except jinja2.exceptions.TemplateError:
                    refused += 1
                    continue
                roles = ",".join(f"{role}:{content.encode().hex()}" for role, content in conversation)
                print(f"{name}\t{int(generation_prompt)}\t{int(thinking is not False)}\t{roles}\t{text.encode().hex()}")
    print(f"render_chat.py: {name}: {refused} case(s) the template refuses", file=sys.stderr)


if __name__ == "__main__":
    main()
