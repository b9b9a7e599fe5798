#!/usr/bin/env python3
"""transformers' renderings of the real chat templates here, for frontends/chat (TestRealTemplates).

Run from anywhere, with transformers 5.17.0 and jinja2 (torch is not needed):

    python3 -m venv /tmp/venv-tmpl && /tmp/venv-tmpl/bin/pip install transformers==5.17.0 tokenizers==0.23.3 jinja2
    /tmp/venv-tmpl/bin/python3 testdata/templates/make_expected.py

(`make tokenizer-golden` runs it too, through testdata/tokenizer/make_expected.py.)

Renders every conversation of ../tokenizer/conversations.json and of conversations.json here
with each template of TEMPLATES through transformers.utils.chat_template_utils.render_jinja_template,
the function tokenizer.apply_chat_template(..., tokenize=False) calls (apply_chat_template adds the
tokenizer's special tokens as variables; none of these templates reads one). Each conversation is
rendered with its own add_generation_prompt and then with the other value, with enable_thinking
where the case sets it, and, for GLM-4.7-Flash when an assistant turn carries reasoning, also with
clear_thinking=False. Messages and tools are passed as json.load gives them: dicts in the files'
key order, which the templates iterate (Qwen3-Coder's `properties|items`, GLM's
`arguments.items()`) and tojson writes.

Writes expected.json: a list of {"template", "conversation", "add_generation_prompt", "extra",
"text"}, text being "ERROR: <message>" where transformers raises. Nothing here calls our Go code;
the output is deterministic (running it twice gives the same bytes).
"""

import hashlib
import json
import sys
from pathlib import Path

import jinja2
import transformers
from transformers.utils.chat_template_utils import render_jinja_template

HERE = Path(__file__).resolve().parent
TEMPLATES = ["Qwen3-Coder.jinja", "GLM-4.7-Flash.jinja", "Qwen-Qwen3-0.6B.jinja"]
CONVERSATIONS = [HERE.parent / "tokenizer" / "conversations.json", HERE / "conversations.json"]


def has_reasoning(c):
    return any(
        m.get("reasoning_content") or "</think>" in (m.get("content") or "")
        for m in c["messages"]
        if m["role"] == "assistant"
    )


def render(template, c, add_generation_prompt, extra):
    kw = dict(extra)
    if "enable_thinking" in c:
        kw["enable_thinking"] = c["enable_thinking"]
    try:
        r, _ = render_jinja_template(
            [c["messages"]], tools=c.get("tools"), chat_template=template, add_generation_prompt=add_generation_prompt, **kw
        )
        return r[0]
    except Exception as e:  # raise_exception, or a template error on this input
        return "ERROR: " + str(e)


def main():
    print(f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}")
    if transformers.__version__ != "5.17.0":
        print("warning: the committed expected.json was made with transformers 5.17.0", file=sys.stderr)
    cases, seen = [], set()
    for path in CONVERSATIONS:
        for c in json.loads(path.read_text(encoding="utf-8")):
            if c["name"] in seen:
                raise SystemExit(f"{path}: conversation {c['name']!r} appears twice")
            seen.add(c["name"])
            cases.append(c)
    out = []
    for name in TEMPLATES:
        raw = (HERE / name).read_bytes()
        print(f"{name}: sha256 {hashlib.sha256(raw).hexdigest()}")
        template = raw.decode("utf-8")
        for c in cases:
            variants = [({}, c["add_generation_prompt"]), ({}, not c["add_generation_prompt"])]
            if name.startswith("GLM") and has_reasoning(c):
                variants.append(({"clear_thinking": False}, c["add_generation_prompt"]))
            for extra, agp in variants:
                out.append(
                    {
                        "template": name,
                        "conversation": c["name"],
                        "add_generation_prompt": agp,
                        "extra": extra,
                        "text": render(template, c, agp, extra),
                    }
                )
    (HERE / "expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum(r["text"].startswith("ERROR: ") for r in out)
    print(f"expected.json: {len(out)} renders of {len(cases)} conversations ({errors} raise)")


if __name__ == "__main__":
    sys.exit(main())
