#!/usr/bin/env python3
"""Write a synthetic tokenizer of GLM-4.7-Flash's shape and its references (glm-synthetic/).

Not the real GLM tokenizer (not available offline). What has GLM's shape:

* tokenizer.json: byte-level BPE, no normalizer, pre-tokenizer Sequence[Split(the GLM-4
  cl100k-like regex with `\\p{N}{1,3}` digit groups, Isolated), ByteLevel(use_regex=false)],
  ByteLevel decoder (docs/MODELS.md §7.3). Vocabulary: 256 byte tokens, N_MERGES merges learnt
  from make_tiny.py's training text with this regex, then GLM's added tokens (all special here;
  [U] whether the real file marks the tool/think markers special).
* chat_template.jinja (copied into tokenizer_config.json): the real GLM-4.7-Flash chat template,
  copied from ../../templates/GLM-4.7-Flash.jinja (published with zai-org/GLM-4.7-Flash; see
  ../../templates/README.md for its source and sha256).

References (HF only, never our code):
* expected.jsonl: HF tokenizers encode(text, add_special_tokens=False) ids and decode(ids,
  skip_special_tokens=False/True) of TEXTS below and of every rendered conversation.
* chat_expected.json: transformers' render_jinja_template of chat_template.jinja over every
  conversation of ../conversations.json (plus clear_thinking=false variants).

Run with the venv of `make golden`: python3 testdata/tokenizer/glm-synthetic/make.py.
Deterministic: running it twice gives byte-identical files.
"""

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import make_tiny  # noqa: E402  (bytes_to_unicode, learn, TRAINING_TEXT)

GLM4_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
N_MERGES = 200
# Digit runs, so that merges exist both inside GLM's 3-digit groups and across their
# boundaries ("34" in "1234"): ids then differ if a tokenizer splits digits any other way.
DIGITS = "123 456 789 1234567 2026 2025 345 3456 34 4567 45 67 78 890 90 12 23\n" * 3
ADDED = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "<tool_response>", "</tool_response>",
]
TEXTS = [
    "12345678",
    "1234567890123",
    "3.14159 and 2,718,281",
    "year 2026: 1 22 333 4444 55555 666666",
    "a1b22c333d4444e55555",
    "x=-1234.5e-67",
    "٣٤٥٦٧ ۱۲۳۴ १२३४५ ¹²³⁴ ①②③④ Ⅻ 二十三",
    "v1.2.3-rc45 0x1F2E3D 0777",
    "It's they'll we'd I'M You'Re",
    "Hello, world!  Two  spaces\tand\ttabs\n\nnew lines\r\n",
    "def f(x):\n    return x ** 2  # comment\n",
    "北京今天天气怎么样？气温 21 度。",
    "emoji 👍🏽 and 🇫🇷 flags",
    "[gMASK]<sop><|system|>You are helpful.<|user|>Hi<|assistant|><think>",
    "<|user|>What is 123+456?<|assistant|></think>579",
    "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
    "<|observation|><tool_response>{\"temp\": 21}</tool_response><|assistant|>",
    "look-alikes: [gMASK <sop <|user| <think </think <|assistant|\n",
    "[gMASK][gMASK]<sop><sop> glued<|user|>text<|endoftext|>after",
    "  <think>  spaced  </think>  ",
]


def main():
    b2u = make_tiny.bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    make_tiny.N_MERGES = N_MERGES
    make_tiny.TRAINING_TEXT += DIGITS
    merges = make_tiny.learn(GLM4_REGEX)
    for a, b in merges:
        if a + b in vocab:
            raise SystemExit(f"merge {a!r}+{b!r} duplicates a token")
        vocab[a + b] = len(vocab)
    added = [
        {"id": len(vocab) + i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
        for i, c in enumerate(ADDED)
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": GLM4_REGEX}, "behavior": "Isolated", "invert": False},
                byte_level,
            ],
        },
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[a, b] for a, b in merges],
        },
    }
    template = (HERE.parent.parent / "templates" / "GLM-4.7-Flash.jinja").read_text(encoding="utf-8")
    (HERE / "chat_template.jinja").write_text(template, encoding="utf-8")
    cfg = {
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added
        },
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
        "do_lower_case": False,
        "eos_token": "<|endoftext|>",
        "extra_special_tokens": {},
        "model_max_length": 128000,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "remove_space": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (HERE / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (HERE / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    from transformers.utils.chat_template_utils import render_jinja_template

    cases = json.loads((HERE.parent / "conversations.json").read_text(encoding="utf-8"))
    chats = []
    for c in cases:
        variants = [("", {})]
        if any(m.get("reasoning_content") or "</think>" in (m.get("content") or "") for m in c["messages"] if m["role"] == "assistant"):
            variants.append(("+clear_thinking=false", {"clear_thinking": False}))
        for suffix, extra in variants:
            kw = dict(extra)
            if "enable_thinking" in c:
                kw["enable_thinking"] = c["enable_thinking"]
            r, _ = render_jinja_template(
                [c["messages"]], tools=c.get("tools"), chat_template=template, add_generation_prompt=c["add_generation_prompt"], **kw
            )
            chats.append({"name": c["name"] + suffix, "conversation": c["name"], "extra": extra, "text": r[0]})
    (HERE / "chat_expected.json").write_text(json.dumps(chats, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    t = Tokenizer.from_file(str(HERE / "tokenizer.json"))
    with open(HERE / "expected.jsonl", "w", encoding="utf-8") as f:
        for text in TEXTS + [c["text"] for c in chats]:
            ids = t.encode(text, add_special_tokens=False).ids
            line = {"text_in": text, "ids": ids, "text": t.decode(ids, skip_special_tokens=False), "skip": t.decode(ids, skip_special_tokens=True)}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")
    print(f"wrote {len(vocab)} model tokens + {len(added)} added, {len(chats)} chats, {len(TEXTS) + len(chats)} encodings", file=sys.stderr)


if __name__ == "__main__":
    main()
