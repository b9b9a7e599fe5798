#!/usr/bin/env python3
"""Generate tiny random Qwen3 checkpoints and their reference activations.

The ONLY source of truth for testdata/tiny/*/golden.* is Hugging Face
transformers (pinned in requirements.txt). Nothing here calls our Go code.

Run from the repository root (the Makefile's `golden` target does this):

    <venv>/bin/python3 testdata/golden/make_golden.py

For each tiny model it:
  1. builds a random Qwen3ForCausalLM from a Qwen3Config (seeded init, larger
     than the default 0.02 so activations are non-trivial),
  2. rounds every parameter to the storage dtype (bf16 for qwen3-a) and back to
     float32, so the float32 goldens are computed from exactly the stored
     weights,
  3. runs float32 eager-attention forwards on three fixed prompts, capturing
     with forward hooks the output of every decoder layer, of the final norm,
     and the logits,
  4. computes a 16-token greedy continuation with an explicit loop of FULL
     forwards (no KV cache; argmax of the last position's logits; EOS is not a
     stop condition), and cross-checks it against model.generate(do_sample=False)
     with EOS stopping disabled (that path uses the KV cache),
  5. requires a top1-top2 logit margin >= MIN_MARGIN at every greedy step; if
     not, bumps the weight seed deterministically and starts over,
  6. saves the checkpoint with save_pretrained (hub layout), reloads it with
     from_pretrained in float32 and checks the reloaded model reproduces the
     goldens bit-exactly, then writes golden.safetensors and golden.json.

CPU only, single thread, deterministic algorithms: running it twice produces
byte-identical files. (golden.safetensors is written with safetensors.torch.save_file;
its JSON header is then rewritten in a fixed key order, because safetensors orders the
__metadata__ keys differently from run to run.)
"""

import os

# Must be set before torch is imported.
os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"

import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy  # noqa: E402
import safetensors  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM  # noqa: E402

transformers.utils.logging.disable_progress_bar()
torch.set_num_threads(1)
torch.set_num_interop_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = Path(__file__).resolve().parent.parent  # testdata/
TINY = ROOT / "tiny"

PROMPT_LENGTHS = (1, 7, 19)
PROMPT_SEED = 1234  # independent of the weight seed: prompts never change on retry
NEW_TOKENS = 16
MIN_MARGIN = 1e-3
MAX_TRIES = 100
MATRIX_STD = 0.2  # embeddings, lm_head and all projection matrices
NORM_LO, NORM_HI = 0.5, 1.5  # every RMSNorm weight ~ U[0.5, 1.5]

NOTE = "reference activations from transformers; do not edit"
TINY_TOKENIZER_MODELS = ("qwen3-a",)  # get testdata/tokenizer/tiny/tokenizer{,_config}.json

MODELS = [
    {
        "name": "qwen3-a",
        "storage_dtype": torch.bfloat16,
        "max_shard_size": None,  # one model.safetensors
        "weight_seed": 1000,
        "config": dict(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=160,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,  # 4*32 = 128 != hidden 64, GQA 2:1
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            max_position_embeddings=512,
        ),
    },
    {
        "name": "qwen3-b",
        "storage_dtype": torch.float32,
        "max_shard_size": "100KB",  # -> several shards + model.safetensors.index.json
        "weight_seed": 2000,
        "config": dict(
            vocab_size=300,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=6,
            num_key_value_heads=6,  # MHA
            head_dim=8,  # = hidden / heads
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            max_position_embeddings=512,
        ),
    },
]


def special_ids(vocab):
    # Qwen-like: bos == pad (<|endoftext|>-ish), eos separate; all at the top of the vocab.
    return {"bos": vocab - 2, "eos": vocab - 1, "pad": vocab - 2}


def make_prompts(vocab):
    g = torch.Generator().manual_seed(PROMPT_SEED + vocab)
    # Draw from the ordinary (non-special) ids [0, vocab-2).
    return [torch.randint(0, vocab - 2, (n,), generator=g, dtype=torch.int64) for n in PROMPT_LENGTHS]


def build_model(spec, seed):
    ids = special_ids(spec["config"]["vocab_size"])
    cfg = Qwen3Config(
        **spec["config"],
        hidden_act="silu",
        attention_bias=False,
        use_sliding_window=False,
        bos_token_id=ids["bos"],
        eos_token_id=ids["eos"],
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg)
    model.config._attn_implementation = "eager"

    g = torch.Generator().manual_seed(seed)
    seen = set()
    with torch.no_grad():
        for name, p in model.named_parameters():  # deterministic (registration) order
            if name.endswith("norm.weight"):
                assert p.dim() == 1, name
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32) * (NORM_HI - NORM_LO) + NORM_LO)
            else:
                assert p.dim() == 2, name
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * MATRIX_STD)
            # Round to the storage dtype and back: the f32 model now holds exactly the stored values.
            p.copy_(p.to(spec["storage_dtype"]).to(torch.float32))
            seen.add(name)
    assert len(seen) == len(list(model.parameters()))
    if cfg.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"
    else:
        assert "lm_head.weight" in seen
    model.generation_config = GenerationConfig(
        bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"]
    )
    model.eval()
    return model


def capture(model, ids):
    """Full float32 forward on one prompt; returns hidden per layer, final norm, logits."""
    got = {}
    hooks = []

    def hook(key):
        def fn(_mod, _inp, out):
            t = out[0] if isinstance(out, (tuple, list)) else out
            got[key] = t[0].detach().to(torch.float32).clone().contiguous()

        return fn

    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.register_forward_hook(hook(f"hidden.{i}")))
    hooks.append(model.model.norm.register_forward_hook(hook("norm")))
    try:
        with torch.inference_mode():
            out = model(input_ids=ids[None, :], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    got["logits"] = out.logits[0].detach().to(torch.float32).clone().contiguous()
    T = ids.shape[0]
    H = model.config.hidden_size
    for i in range(model.config.num_hidden_layers):
        assert got[f"hidden.{i}"].shape == (T, H)
    assert got["norm"].shape == (T, H)
    assert got["logits"].shape == (T, model.config.vocab_size)
    return got


def greedy(model, ids):
    """Explicit greedy loop, full forward each step (no cache), EOS ignored."""
    seq = ids.clone()
    toks, margins = [], []
    with torch.inference_mode():
        for _ in range(NEW_TOKENS):
            logits = model(input_ids=seq[None, :], use_cache=False).logits[0, -1].to(torch.float32)
            top = torch.topk(logits, 2)
            margins.append(float(top.values[0] - top.values[1]))
            nxt = int(torch.argmax(logits))
            assert nxt == int(top.indices[0])
            toks.append(nxt)
            seq = torch.cat([seq, torch.tensor([nxt], dtype=seq.dtype)])
    return torch.tensor(toks, dtype=torch.int64), margins


def greedy_generate(model, ids):
    """model.generate cross-check (KV cache path), EOS stopping disabled."""
    gc = GenerationConfig(
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=0,
        eos_token_id=None,
        pad_token_id=model.generation_config.pad_token_id,
        bos_token_id=model.generation_config.bos_token_id,
    )
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids[None, :], attention_mask=torch.ones_like(ids)[None, :], generation_config=gc
        )
    return out[0, ids.shape[0]:]


def compute(model, prompts):
    res = []
    for ids in prompts:
        acts = capture(model, ids)
        toks, margins = greedy(model, ids)
        res.append({"ids": ids, "acts": acts, "greedy": toks, "margins": margins})
    return res


def canonicalize_safetensors_header(path):
    """Rewrite a safetensors header with a fixed key order.

    safetensors serializes `__metadata__` from a hash map, so the order of its keys (and thus the
    file bytes) changes from run to run. Reordering JSON keys does not change the header length,
    so the tensor data and offsets are untouched; only the header bytes become canonical.
    """
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    canon = {}
    if "__metadata__" in header:
        canon["__metadata__"] = dict(sorted(header.pop("__metadata__").items()))
    for k in sorted(header, key=lambda k: (header[k]["data_offsets"][0], k)):
        canon[k] = header[k]
    enc = json.dumps(canon, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert len(enc) <= n, (len(enc), n)
    raw[8 : 8 + n] = enc + b" " * (n - len(enc))  # safetensors allows trailing-space padding
    path.write_bytes(bytes(raw))


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_one(spec, versions):
    name = spec["name"]
    vocab = spec["config"]["vocab_size"]
    prompts = make_prompts(vocab)

    seed = spec["weight_seed"]
    for attempt in range(MAX_TRIES):
        model = build_model(spec, seed)
        res = compute(model, prompts)
        min_margin = min(min(r["margins"]) for r in res)
        if min_margin >= MIN_MARGIN:
            break
        print(f"{name}: seed {seed}: min greedy margin {min_margin:.3g} < {MIN_MARGIN}; retrying", file=sys.stderr)
        seed += 1
    else:
        raise SystemExit(f"{name}: no seed with greedy margin >= {MIN_MARGIN} in {MAX_TRIES} tries")

    # Cross-check the explicit loop with transformers' own generate (KV cache path).
    for i, r in enumerate(res):
        gen = greedy_generate(model, r["ids"])
        if not torch.equal(gen, r["greedy"]):
            raise SystemExit(f"{name} p{i}: generate {gen.tolist()} != explicit loop {r['greedy'].tolist()}")

    out_dir = TINY / name
    if out_dir.exists():
        shutil.rmtree(out_dir)  # no stale shards from an earlier run
    out_dir.mkdir(parents=True)

    save_model = model.to(spec["storage_dtype"])  # exact: params already hold storage-dtype values
    kw = {}  # transformers v5 always writes safetensors
    if spec["max_shard_size"] is not None:
        kw["max_shard_size"] = spec["max_shard_size"]
    save_model.save_pretrained(out_dir, **kw)
    del model, save_model
    # The synthetic byte-level BPE tokenizer (testdata/tokenizer/make_tiny.py), so text goes end to end.
    if name in TINY_TOKENIZER_MODELS:
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(ROOT / "tokenizer" / "tiny" / f, out_dir / f)

    # Reload what was written, in float32, and check it reproduces the goldens bit-exactly.
    reloaded = Qwen3ForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
    reloaded.eval()
    # from_pretrained may leave parameters in mmap'd storage at unaligned offsets, and CPU GEMM
    # results depend (in the last bits) on alignment; copy into fresh (64-byte aligned) storage so
    # the comparison below can be bit-exact. Tied parameters are one object, so ties survive.
    with torch.no_grad():
        for p in reloaded.parameters():
            p.data = p.data.clone().contiguous()
    if spec["config"]["tie_word_embeddings"]:
        assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    else:
        assert not torch.equal(reloaded.lm_head.weight, reloaded.model.embed_tokens.weight)
    res2 = compute(reloaded, prompts)
    for i, (a, b) in enumerate(zip(res, res2)):
        for k in a["acts"]:
            if not torch.equal(a["acts"][k], b["acts"][k]):
                raise SystemExit(f"{name} p{i}.{k}: reloaded checkpoint does not reproduce the golden")
        assert torch.equal(a["greedy"], b["greedy"])

    tensors = {}
    for i, r in enumerate(res):
        tensors[f"p{i}.ids"] = r["ids"].to(torch.int32).contiguous()
        for l in range(spec["config"]["num_hidden_layers"]):
            tensors[f"p{i}.hidden.{l}"] = r["acts"][f"hidden.{l}"]
        tensors[f"p{i}.norm"] = r["acts"]["norm"]
        tensors[f"p{i}.logits"] = r["acts"]["logits"]
        tensors[f"p{i}.greedy"] = r["greedy"].to(torch.int32).contiguous()
    meta = {"transformers": versions["transformers"], "torch": versions["torch"], "note": NOTE}
    golden = out_dir / "golden.safetensors"
    save_file(tensors, str(golden), metadata=meta)
    canonicalize_safetensors_header(golden)
    with safe_open(str(golden), framework="pt") as f:  # read back and check
        assert f.metadata() == meta
        assert sorted(f.keys()) == sorted(tensors)
        for k in f.keys():
            t = f.get_tensor(k)
            assert t.dtype == tensors[k].dtype and torch.equal(t, tensors[k]), k

    doc = {
        **meta,
        "model": name,
        "storage_dtype": str(spec["storage_dtype"]).replace("torch.", ""),
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "weight_seed": seed,
        "prompt_seed": PROMPT_SEED + vocab,
        "init": {"matrix_std": MATRIX_STD, "norm_uniform": [NORM_LO, NORM_HI]},
        "special_ids": special_ids(vocab),
        "greedy_method": (
            "explicit loop: 16 full forwards without KV cache, argmax of last-position logits, "
            "EOS not a stop condition; cross-checked equal to model.generate(do_sample=False, "
            "max_new_tokens=16, eos_token_id=None) (KV-cache path)"
        ),
        "min_greedy_margin_required": MIN_MARGIN,
        "min_greedy_margin": round(min_margin, 6),
        "prompts": [
            {
                "name": f"p{i}",
                "ids": r["ids"].tolist(),
                "greedy": r["greedy"].tolist(),
                "min_greedy_margin": round(min(r["margins"]), 6),
            }
            for i, r in enumerate(res)
        ],
        "tensors": {
            "p{i}.ids": "I32 [T]",
            "p{i}.hidden.{layer}": "F32 [T, hidden] output of decoder layer {layer}",
            "p{i}.norm": "F32 [T, hidden] output of the final model.norm",
            "p{i}.logits": "F32 [T, vocab]",
            "p{i}.greedy": "I32 [16] greedy continuation",
        },
    }
    text = json.dumps(doc, indent=2)
    # Keep lists of numbers on one line so the file stays short and readable.
    text = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
    (out_dir / "golden.json").write_text(text + "\n")
    return out_dir


IMAGES_DIR = ROOT / "images"
# min/max pixels for the test images: small, so the goldens stay small; the Qwen3-VL defaults
# (256², 4096²) are checked by smart_resize cases in Go against values printed here.
IMAGE_MIN_PIXELS = 32 * 32
IMAGE_MAX_PIXELS = 96 * 96
SMART_RESIZE_CASES = [  # (h, w, min_pixels, max_pixels)
    (1, 1, 65536, 16777216), (100, 61, 65536, 16777216), (480, 640, 65536, 16777216),
    (1080, 1920, 65536, 16777216), (5000, 7000, 65536, 16777216), (16, 3000, 65536, 16777216),
    (45, 70, 1024, 9216), (200, 130, 1024, 9216), (48, 48, 1024, 9216), (3000, 4000, 1024, 9216),
    (80, 80, 1024, 9216), (112, 48, 1024, 9216), (999, 1001, 1024, 9216), (16, 16, 1024, 9216),
    (10, 2500, 65536, 16777216),  # aspect ratio 250: HF raises
]


def make_test_images():
    """Deterministic small test images (smooth gradients plus seeded noise) as PNG, JPEG and WebP."""
    from PIL import Image

    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    rng = numpy.random.default_rng(20260)

    def pattern(h, w, channels=3):
        y = numpy.linspace(0, 1, h)[:, None]
        x = numpy.linspace(0, 1, w)[None, :]
        planes = [
            128 + 100 * numpy.sin(6.0 * x + 3.0 * y),
            128 + 100 * numpy.cos(5.0 * y - 2.0 * x * y),
            255 * x * (1 - y) + 40 * numpy.sin(20 * x * y),
            255 * (0.3 + 0.7 * y * x),
        ][:channels]
        img = numpy.stack(planes, axis=-1) + rng.normal(0, 12, (h, w, channels))
        return numpy.clip(numpy.rint(img), 0, 255).astype(numpy.uint8)

    files = {
        # upscaled to 48×80 (smart_resize rounding), both passes of the resampler
        "a.png": (Image.fromarray(pattern(45, 70)), dict()),
        # downscaled past max_pixels: 200×130 -> 96×64
        "b.png": (Image.fromarray(pattern(200, 130, 4), "RGBA"), dict()),
        # baseline JPEG without chroma subsampling (4:4:4), 61×100 -> 64×96
        "c.jpg": (Image.fromarray(pattern(61, 100)), dict(quality=92, subsampling=0)),
        # lossless WebP, 40×52 -> 32×64... (smart_resize decides)
        "d.webp": (Image.fromarray(pattern(40, 52)), dict(lossless=True)),
        # grey PNG, 33×90 -> 32×96
        "e.png": (Image.fromarray(pattern(33, 90, 1)[:, :, 0], "L"), dict()),
        # JPEG with the default 4:2:0 chroma subsampling: decoders differ here (reported, looser bound)
        "f.jpg": (Image.fromarray(pattern(64, 64)), dict(quality=90)),
        # 4:2:2 and 4:2:0 JPEGs of odd sizes: the chroma upsampler's edge cases
        "g.jpg": (Image.fromarray(pattern(45, 71)), dict(quality=90, subsampling=1)),
        "h.jpg": (Image.fromarray(pattern(37, 51)), dict(quality=90, subsampling=2)),
    }
    for name, (img, kw) in files.items():
        img.save(IMAGES_DIR / name, **kw)
    return sorted(files)


def make_image_goldens(versions):
    """HF's Qwen2-VL image processor (the class Qwen3-VL's preprocessor_config names) on the test images.

    Writes testdata/images/golden.safetensors: pixel_values.<file> f32 [N, 1536] and grid_thw.<file>
    i64 [3], plus golden.json with the smart_resize cases.
    """
    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor, smart_resize

    names = make_test_images()
    proc = Qwen2VLImageProcessor(
        size={"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": IMAGE_MAX_PIXELS},
        patch_size=16, temporal_patch_size=2, merge_size=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    tensors = {}
    for name in names:
        img = Image.open(IMAGES_DIR / name)
        out = proc(images=[img], return_tensors="pt")
        tensors[f"pixel_values.{name}"] = out["pixel_values"].to(torch.float32).contiguous()
        tensors[f"grid_thw.{name}"] = out["image_grid_thw"][0].to(torch.int64).contiguous()
    cases = []
    for h, w, lo, hi in SMART_RESIZE_CASES:
        try:
            rh, rw = smart_resize(h, w, factor=32, min_pixels=lo, max_pixels=hi)
            cases.append({"h": h, "w": w, "min_pixels": lo, "max_pixels": hi, "out": [rh, rw]})
        except ValueError as e:
            cases.append({"h": h, "w": w, "min_pixels": lo, "max_pixels": hi, "error": str(e)})
    golden = IMAGES_DIR / "golden.safetensors"
    import PIL
    meta = {"note": NOTE, "transformers": versions["transformers"], "torch": versions["torch"],
            "torchvision": __import__("torchvision").__version__.split("+")[0], "pillow": PIL.__version__,
            "min_pixels": str(IMAGE_MIN_PIXELS), "max_pixels": str(IMAGE_MAX_PIXELS)}
    save_file(tensors, str(golden), metadata=meta)
    canonicalize_safetensors_header(golden)
    doc = {"note": NOTE, "images": names, "min_pixels": IMAGE_MIN_PIXELS, "max_pixels": IMAGE_MAX_PIXELS,
           "smart_resize": cases}
    (IMAGES_DIR / "golden.json").write_text(json.dumps(doc, indent=1) + "\n")
    return IMAGES_DIR


QWEN3VL_DIR = TINY / "qwen3vl"
QWEN3VL_IMAGES = ("a.png", "b.png")  # 32×64 (8 patches, 2 tokens) and 96×64 (24 patches, 6 tokens)
QWEN3VL_IMAGE_TOKEN, QWEN3VL_VIDEO_TOKEN, QWEN3VL_VISION_START, QWEN3VL_VISION_END = 250, 251, 248, 249
QWEN3VL_NEW_TOKENS = 8


def qwen3vl_config():
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_interleaved": True, "mrope_section": [4, 2, 2]},
            tie_word_embeddings=True, bos_token_id=240, eos_token_id=241, pad_token_id=242,
        ),
        vision_config=dict(
            depth=4, hidden_size=32, intermediate_size=64, num_heads=2, in_channels=3, patch_size=16,
            temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=64, num_position_embeddings=16,
            deepstack_visual_indexes=[0, 2, 3], hidden_act="gelu_pytorch_tanh",
        ),
        image_token_id=QWEN3VL_IMAGE_TOKEN, video_token_id=QWEN3VL_VIDEO_TOKEN,
        vision_start_token_id=QWEN3VL_VISION_START, vision_end_token_id=QWEN3VL_VISION_END,
        tie_word_embeddings=True,
    )


def make_qwen3vl_goldens(versions):
    """A tiny random Qwen3-VL (4-block vision tower with DeepStack taps after blocks 0, 2, 3; 4 text layers)
    run by transformers on two test images of different sizes with text before, between and after them.

    Records HF's pixel_values and grid_thw, the vision inputs HF derives from grid_thw (bilinear
    position-embedding taps and weights, 2-D rope positions), the vision tower output (last hidden
    state), the merged image features and the three DeepStack features, the 3-axis MRoPE position
    ids and rope_delta, every decoder layer's output, the final norm, the logits and an 8-token
    greedy continuation (full forwards with the images, cross-checked against generate()).
    """
    from PIL import Image
    from transformers import Qwen3VLForConditionalGeneration
    from transformers import vision_utils
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor

    torch.manual_seed(31)
    cfg = qwen3vl_config()
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    model = Qwen3VLForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(32)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight") or ".norm1." in name or ".norm2." in name:
                if name.endswith(".weight"):
                    v = torch.rand(p.shape, generator=gen) + 0.5
                else:
                    v = torch.randn(p.shape, generator=gen) * 0.1
            elif name.endswith(".bias"):
                v = torch.randn(p.shape, generator=gen) * 0.1
            elif "pos_embed" in name:
                v = torch.randn(p.shape, generator=gen) * 0.5
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                std = MATRIX_STD if "language_model" in name else 1.0 / fan_in**0.5
                v = torch.randn(p.shape, generator=gen) * std
            p.copy_(v.to(torch.bfloat16).to(torch.float32))

    proc = Qwen2VLImageProcessor(
        size={"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": IMAGE_MAX_PIXELS},
        patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
    )
    imgs = [Image.open(IMAGES_DIR / n) for n in QWEN3VL_IMAGES]
    px = proc(images=imgs, return_tensors="pt")
    pixel_values, grid_thw = px["pixel_values"].to(torch.float32), px["image_grid_thw"]
    ntok = [int(g.prod()) // 4 for g in grid_thw]

    rng = numpy.random.default_rng(33)
    text = lambda n: [int(x) for x in rng.integers(0, 240, n)]  # noqa: E731
    ids = text(5)
    for i, n in enumerate(ntok):
        ids += [QWEN3VL_VISION_START] + [QWEN3VL_IMAGE_TOKEN] * n + [QWEN3VL_VISION_END] + text(3 + i)
    input_ids = torch.tensor([ids])

    def forward(ids_t, capture=False):
        tt = (ids_t == QWEN3VL_IMAGE_TOKEN).to(torch.int32)
        caps = {}
        hooks = []
        if capture:
            lm = model.model.language_model
            for i, layer in enumerate(lm.layers):
                hooks.append(layer.register_forward_hook(lambda m, a, o, i=i: caps.__setitem__(f"layer.{i}", (o[0] if isinstance(o, tuple) else o)[0].clone())))
            hooks.append(lm.norm.register_forward_hook(lambda m, a, o: caps.__setitem__("norm", o[0].clone())))
        out = model(input_ids=ids_t, pixel_values=pixel_values, image_grid_thw=grid_thw, mm_token_type_ids=tt,
                    attention_mask=torch.ones_like(ids_t))
        for h in hooks:
            h.remove()
        return out, caps

    with torch.no_grad():
        out, caps = forward(input_ids, capture=True)
        vis = model.model.visual(pixel_values, grid_thw=grid_thw, return_dict=True)
        pos, delta = model.model.get_rope_index(input_ids, (input_ids == QWEN3VL_IMAGE_TOKEN).to(torch.int32), grid_thw,
                                                attention_mask=torch.ones_like(input_ids))
        interp_idx, interp_w = vision_utils.get_vision_interpolation_indices_and_weights(
            grid_thw, num_grid_per_side=4, mode="bilinear", align_corners=True, spatial_merge_size=2)
        vpos = vision_utils.get_vision_position_ids(grid_thw, 2)
        greedy_ids = list(ids)
        for _ in range(QWEN3VL_NEW_TOKENS):
            o, _ = forward(torch.tensor([greedy_ids]))
            lg = o.logits[0, -1]
            top = torch.topk(lg, 2).values
            assert float(top[0] - top[1]) >= MIN_MARGIN, "greedy margin too small; change the seeds"
            greedy_ids.append(int(lg.argmax()))
        g = model.generate(input_ids=input_ids, pixel_values=pixel_values, image_grid_thw=grid_thw,
                           mm_token_type_ids=(input_ids == QWEN3VL_IMAGE_TOKEN).to(torch.int32),
                           attention_mask=torch.ones_like(input_ids), max_new_tokens=QWEN3VL_NEW_TOKENS,
                           do_sample=False, eos_token_id=None,
                           generation_config=GenerationConfig(do_sample=False, eos_token_id=None, pad_token_id=242))
        assert g[0].tolist() == greedy_ids, (g[0].tolist(), greedy_ids)

    tensors = {
        "input_ids": input_ids[0].to(torch.int64),
        "pixel_values": pixel_values,
        "image_grid_thw": grid_thw.to(torch.int64),
        "vision.interp_indices": interp_idx.to(torch.int64),
        "vision.interp_weights": interp_w.to(torch.float32),
        "vision.position_ids": vpos.to(torch.int64),
        "vision.last_hidden_state": vis.last_hidden_state,
        "vision.merged": vis.pooler_output,
        "position_ids": pos[:, 0, :].to(torch.int64),
        "rope_delta": delta.reshape(1).to(torch.int64),
        "norm": caps["norm"],
        "logits": out.logits[0],
        "greedy": torch.tensor(greedy_ids[len(ids):], dtype=torch.int64),
    }
    for k, f in enumerate(vis.deepstack_features):
        tensors[f"vision.deepstack.{k}"] = f
    for i in range(cfg.text_config.num_hidden_layers):
        tensors[f"hidden.{i}"] = caps[f"layer.{i}"]
    tensors = {k: v.contiguous() for k, v in tensors.items()}

    if QWEN3VL_DIR.exists():
        shutil.rmtree(QWEN3VL_DIR)
    QWEN3VL_DIR.mkdir(parents=True)
    save = Qwen3VLForConditionalGeneration(cfg)
    save.load_state_dict(model.state_dict())
    save.to(torch.bfloat16).save_pretrained(QWEN3VL_DIR)
    (QWEN3VL_DIR / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "Qwen2VLImageProcessorFast", "do_convert_rgb": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
        "merge_size": 2, "patch_size": 16, "temporal_patch_size": 2, "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": IMAGE_MIN_PIXELS, "longest_edge": IMAGE_MAX_PIXELS}}, indent=2) + "\n")
    golden = QWEN3VL_DIR / "golden.safetensors"
    meta = {"note": NOTE, "transformers": versions["transformers"], "torch": versions["torch"],
            "images": ",".join(QWEN3VL_IMAGES)}
    save_file(tensors, str(golden), metadata=meta)
    canonicalize_safetensors_header(golden)
    write_qwen3vl_tokenizer()
    return QWEN3VL_DIR


# A synthetic tokenizer for the tiny Qwen3-VL, so that a chat request goes end to end: text id k < 240 is the
# added token "<tk>", 240.. are Qwen's special tokens at the config's ids, and the chat template renders content
# parts only (text as is, an image as <|vision_start|><|image_pad|><|vision_end|>, Qwen3-VL's image macro), so a
# message whose parts are the golden prompt's text runs and images renders exactly the golden input_ids.
QWEN3VL_SPECIALS = {240: "<|im_start|>", 241: "<|im_end|>", 242: "<|endoftext|>", QWEN3VL_VISION_START: "<|vision_start|>",
                    QWEN3VL_VISION_END: "<|vision_end|>", QWEN3VL_IMAGE_TOKEN: "<|image_pad|>", QWEN3VL_VIDEO_TOKEN: "<|video_pad|>"}
QWEN3VL_TEMPLATE = (
    "{%- for message in messages %}{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for item in message.content %}{%- if item.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif item.type == 'text' %}{{- item.text }}{%- endif %}{%- endfor %}{%- endif %}{%- endfor %}"
)


def write_qwen3vl_tokenizer():
    from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from safetensors.torch import load_file

    vocab = {f"<t{k}>": k for k in range(240)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([AddedToken(f"<t{k}>", normalized=False, special=False) for k in range(240)])
    tok.add_special_tokens([AddedToken(QWEN3VL_SPECIALS.get(k, f"<|reserved_{k}|>"), normalized=False, special=True)
                            for k in range(240, 256)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = QWEN3VL_TEMPLATE
    for k, v in QWEN3VL_SPECIALS.items():
        assert fast.convert_tokens_to_ids(v) == k, (v, fast.convert_tokens_to_ids(v), k)
    # The golden prompt, one pad per image, as a chat message of text and image parts.
    ids = load_file(str(QWEN3VL_DIR / "golden.safetensors"))["input_ids"].tolist()
    parts, text = [], []
    for i, t in enumerate(ids):
        if t == QWEN3VL_IMAGE_TOKEN:
            if ids[i - 1] != QWEN3VL_IMAGE_TOKEN:
                parts.append({"type": "image"})
            continue
        if t in (QWEN3VL_VISION_START, QWEN3VL_VISION_END):
            if text:
                parts.append({"type": "text", "text": "".join(text)})
                text = []
            continue
        text.append(f"<t{t}>")
    if text:
        parts.append({"type": "text", "text": "".join(text)})
    msgs = [{"role": "user", "content": parts}]
    rendered = fast.apply_chat_template(msgs, tokenize=False)
    want = []
    for i, t in enumerate(ids):
        if not (t == QWEN3VL_IMAGE_TOKEN and ids[i - 1] == QWEN3VL_IMAGE_TOKEN):
            want.append(t)
    assert fast(rendered, add_special_tokens=False)["input_ids"] == want, rendered
    fast.save_pretrained(QWEN3VL_DIR)
    for extra in ("special_tokens_map.json",):
        if (QWEN3VL_DIR / extra).exists():
            (QWEN3VL_DIR / extra).unlink()
    (QWEN3VL_DIR / "chat_request.json").write_text(json.dumps({"messages": msgs, "rendered": rendered}, indent=2) + "\n")


# --- Qwen3-Next (Gated DeltaNet hybrid), testdata/tiny/qwen3next/{dense,moe} --------------------------------------

QWEN3NEXT_PROMPT_LENGTHS = (5, 70, 131)  # > 64: chunked prefill (chunk 64) crosses one and two chunk boundaries
QWEN3NEXT_BASE = dict(
    vocab_size=128,
    hidden_size=32,
    num_hidden_layers=4,
    layer_types=["linear_attention", "full_attention", "linear_attention", "linear_attention"],
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},  # 8 of 16 rotated
    linear_num_key_heads=2,
    linear_num_value_heads=4,  # two value heads per key head
    linear_key_head_dim=8,
    linear_value_head_dim=12,  # d_k != d_v, so a transposed state shows
    linear_conv_kernel_dim=4,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    max_position_embeddings=512,
)
QWEN3NEXT_MODELS = [
    {  # every MLP dense (mlp_only_layers): the DeltaNet and gated-attention layers without MoE
        "name": "qwen3next/dense",
        "weight_seed": 3000,
        "config": dict(QWEN3NEXT_BASE, intermediate_size=48, mlp_only_layers=[0, 1, 2, 3], num_experts=8,
                       num_experts_per_tok=2, moe_intermediate_size=16, shared_expert_intermediate_size=24),
    },
    {  # the real structure: every layer MoE (8 experts, top-2, normalised) plus the sigmoid-gated shared expert
        "name": "qwen3next/moe",
        "weight_seed": 4000,
        "config": dict(QWEN3NEXT_BASE, intermediate_size=48, mlp_only_layers=[], num_experts=8, num_experts_per_tok=2,
                       moe_intermediate_size=16, shared_expert_intermediate_size=24, norm_topk_prob=True,
                       decoder_sparse_step=1),
    },
]


def build_qwen3next(spec, seed):
    from transformers import Qwen3NextConfig, Qwen3NextForCausalLM

    ids = special_ids(spec["config"]["vocab_size"])
    cfg = Qwen3NextConfig(**spec["config"], hidden_act="silu", attention_bias=False,
                          bos_token_id=ids["bos"], eos_token_id=ids["eos"])
    torch.manual_seed(seed)
    model = Qwen3NextForCausalLM(cfg)
    model.config._attn_implementation = "eager"
    g = torch.Generator().manual_seed(seed)

    def uniform(shape, lo, hi):
        return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo

    with torch.no_grad():
        for name, p in model.named_parameters():  # deterministic (registration) order
            if name.endswith("A_log"):  # decay rates A in [1e-3, 1]: the state remembers across a 64-token chunk
                p.copy_(uniform(p.shape, float(numpy.log(1e-3)), 0.0))
            elif name.endswith("dt_bias"):
                p.copy_(uniform(p.shape, -1.0, 1.0))
            elif name.endswith("linear_attn.norm.weight"):  # gated RMSNorm: plain weight
                p.copy_(uniform(p.shape, NORM_LO, NORM_HI))
            elif name.endswith("norm.weight"):  # Qwen3NextRMSNorm: zero-centred, used as (1 + w)
                p.copy_(uniform(p.shape, -0.5, 0.5))
            elif name.endswith("conv1d.weight"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.5)
            else:
                assert p.dim() in (2, 3), name
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * MATRIX_STD)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))  # exactly the stored (bf16) values
    model.generation_config = GenerationConfig(bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    model.eval()
    return model


def make_qwen3next_goldens(versions):
    """Tiny random Qwen3-Next checkpoints (bf16) and their f32 reference activations.

    Same recipe and file format as make_one: full forwards (transformers' chunked gated delta rule, chunk 64) for the
    per-layer hidden states, final norm and logits; the greedy continuation from full forwards, cross-checked against
    model.generate (chunked prefill, then the recurrent one-token form with the conv and recurrent states).
    """
    from transformers import Qwen3NextForCausalLM

    dirs = []
    for spec in QWEN3NEXT_MODELS:
        name, vocab = spec["name"], spec["config"]["vocab_size"]
        g = torch.Generator().manual_seed(PROMPT_SEED + vocab)
        prompts = [torch.randint(0, vocab - 2, (n,), generator=g, dtype=torch.int64) for n in QWEN3NEXT_PROMPT_LENGTHS]
        seed = spec["weight_seed"]
        for _ in range(MAX_TRIES):
            model = build_qwen3next(spec, seed)
            res = compute(model, prompts)
            min_margin = min(min(r["margins"]) for r in res)
            if min_margin >= MIN_MARGIN:
                break
            print(f"{name}: seed {seed}: min greedy margin {min_margin:.3g} < {MIN_MARGIN}; retrying", file=sys.stderr)
            seed += 1
        else:
            raise SystemExit(f"{name}: no seed with greedy margin >= {MIN_MARGIN} in {MAX_TRIES} tries")
        for i, r in enumerate(res):
            gen = greedy_generate(model, r["ids"])
            if not torch.equal(gen, r["greedy"]):
                raise SystemExit(f"{name} p{i}: generate {gen.tolist()} != explicit loop {r['greedy'].tolist()}")

        out_dir = TINY / name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        model.to(torch.bfloat16).save_pretrained(out_dir)
        del model
        reloaded = Qwen3NextForCausalLM.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
        reloaded.eval()
        with torch.no_grad():
            for p in reloaded.parameters():
                p.data = p.data.clone().contiguous()
        res2 = compute(reloaded, prompts)
        for i, (a, b) in enumerate(zip(res, res2)):
            for k in a["acts"]:
                if not torch.equal(a["acts"][k], b["acts"][k]):
                    raise SystemExit(f"{name} p{i}.{k}: reloaded checkpoint does not reproduce the golden")
            assert torch.equal(a["greedy"], b["greedy"])

        tensors = {}
        for i, r in enumerate(res):
            tensors[f"p{i}.ids"] = r["ids"].to(torch.int32).contiguous()
            for l in range(spec["config"]["num_hidden_layers"]):
                tensors[f"p{i}.hidden.{l}"] = r["acts"][f"hidden.{l}"]
            tensors[f"p{i}.norm"] = r["acts"]["norm"]
            tensors[f"p{i}.logits"] = r["acts"]["logits"]
            tensors[f"p{i}.greedy"] = r["greedy"].to(torch.int32).contiguous()
        meta = {"transformers": versions["transformers"], "torch": versions["torch"], "note": NOTE}
        golden = out_dir / "golden.safetensors"
        save_file(tensors, str(golden), metadata=meta)
        canonicalize_safetensors_header(golden)
        doc = {
            **meta, "model": name, "storage_dtype": "bfloat16", "compute_dtype": "float32",
            "attn_implementation": "eager", "weight_seed": seed, "prompt_seed": PROMPT_SEED + vocab,
            "init": {"matrix_std": MATRIX_STD, "conv_std": 0.5, "zero_centred_norms": [-0.5, 0.5],
                     "gated_norm": [NORM_LO, NORM_HI], "A": "exp(U[log 1e-3, 0])", "dt_bias": [-1.0, 1.0]},
            "special_ids": special_ids(vocab),
            "greedy_method": "explicit loop of 16 full forwards (chunked delta rule), argmax, EOS ignored; "
                             "cross-checked equal to model.generate (chunked prefill + recurrent decode)",
            "min_greedy_margin": round(min_margin, 6),
            "prompts": [{"name": f"p{i}", "ids": r["ids"].tolist(), "greedy": r["greedy"].tolist(),
                         "min_greedy_margin": round(min(r["margins"]), 6)} for i, r in enumerate(res)],
        }
        text = json.dumps(doc, indent=2)
        text = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
        (out_dir / "golden.json").write_text(text + "\n")
        dirs.append(out_dir)
    return dirs


# --- MoE and MLA: Qwen3-MoE and GLM-4.7-Flash, testdata/tiny/{qwen3moe,glm4moelite} ------------------------------

MOE_MODELS = [
    {  # 8 experts, top-3 renormalised softmax routing; layer 1 dense through mlp_only_layers
        "name": "qwen3moe",
        "arch": "Qwen3MoeForCausalLM",
        "weight_seed": 5000,
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, num_experts=8, num_experts_per_tok=3, moe_intermediate_size=32,
            norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
            rope_parameters={"rope_type": "default", "rope_theta": 10000000.0}, rms_norm_eps=1e-6,
            tie_word_embeddings=False, max_position_embeddings=512, use_sliding_window=False, attention_bias=False,
        ),
    },
    {  # MLA (q/kv LoRA, interleaved RoPE on 8 dims), dense layer 0, 8 experts top-3 sigmoid + bias, shared expert
        "name": "glm4moelite",
        "arch": "Glm4MoeLiteForCausalLM",
        "weight_seed": 6000,
        "mtp_layers": 1,  # a tiny MTP layer stored as model.layers.<num_hidden_layers>.*, ignored by transformers
        "config": dict(
            vocab_size=256, hidden_size=64, intermediate_size=96, moe_intermediate_size=32, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=4, n_shared_experts=1, n_routed_experts=8,
            routed_scaling_factor=1.8, kv_lora_rank=32, q_lora_rank=24, qk_rope_head_dim=8, v_head_dim=12,
            qk_nope_head_dim=16, n_group=1, topk_group=1, num_experts_per_tok=3, norm_topk_prob=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rope_interleave=True,
            rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=512, attention_bias=False,
            num_nextn_predict_layers=1,
        ),
    },
]
MOE_BIAS_STD = 0.1  # GLM's e_score_correction_bias: large enough to change some choices


def build_moe_model(spec, seed):
    ids = special_ids(spec["config"]["vocab_size"])
    cls = getattr(transformers, spec["arch"])
    cfg = cls.config_class(**spec["config"], hidden_act="silu", bos_token_id=ids["bos"], eos_token_id=ids["eos"])
    torch.manual_seed(seed)
    model = cls(cfg)
    model.config._attn_implementation = "eager"
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        params = list(model.named_parameters()) + [
            (n, b) for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")
        ]
        for name, p in params:  # deterministic (registration) order
            if name.endswith("norm.weight"):
                p.copy_(torch.rand(p.shape, generator=g, dtype=torch.float32) * (NORM_HI - NORM_LO) + NORM_LO)
            elif name.endswith("e_score_correction_bias"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * MOE_BIAS_STD)
            else:
                assert p.dim() in (2, 3), name
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * MATRIX_STD)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))  # exactly the stored (bf16) values
    model.generation_config = GenerationConfig(bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    model.eval()
    return model


def capture_routes(model, ids):
    """Chosen experts per MoE layer (sorted ids, I32 [T, k]) and the selection margin between the k-th and
    (k+1)-th selection score of each token (F32 [T]): choices are compared only where that margin is clear."""
    got, hooks = {}, []
    for i, layer in enumerate(model.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None or not hasattr(gate, "top_k"):
            continue  # dense layer

        def fn(mod, _inp, out, i=i):
            logits, _, idx = out
            logits = logits.to(torch.float32)
            if hasattr(mod, "e_score_correction_bias"):
                sel = logits.sigmoid() + mod.e_score_correction_bias
            else:
                sel = torch.softmax(logits, dim=-1)
            top = torch.topk(sel, mod.top_k + 1, dim=-1).values
            got[f"router.{i}"] = torch.sort(idx, dim=-1).values.to(torch.int32).contiguous()
            got[f"router_margin.{i}"] = (top[:, -2] - top[:, -1]).contiguous()

        hooks.append(gate.register_forward_hook(fn))
    try:
        with torch.inference_mode():
            model(input_ids=ids[None, :], use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return got


def add_mtp_layer(spec, out_dir, seed):
    """Append a tiny DeepSeek-style MTP layer as model.layers.<L>.* to model.safetensors (transformers never
    writes it: the hub checkpoints carry it, and loaders must skip it)."""
    c = spec["config"]
    L, H, V = c["num_hidden_layers"], c["hidden_size"], c["vocab_size"]
    path = out_dir / "model.safetensors"
    tensors = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    g = torch.Generator().manual_seed(seed + 7)
    src = f"model.layers.{L - 1}."
    for k in sorted(tensors):
        if k.startswith(src):
            t = tensors[k]
            tensors[f"model.layers.{L}." + k[len(src):]] = (torch.randn(t.shape, generator=g) * 0.1).to(t.dtype)
    for name, shape in [("eh_proj.weight", (H, 2 * H)), ("enorm.weight", (H,)), ("hnorm.weight", (H,)),
                        ("embed_tokens.weight", (V, H)), ("shared_head.head.weight", (V, H)),
                        ("shared_head.norm.weight", (H,))]:
        tensors[f"model.layers.{L}.{name}"] = (torch.randn(shape, generator=g) * 0.1).to(torch.bfloat16)
    save_file(tensors, str(path), metadata=meta)
    canonicalize_safetensors_header(path)


def make_moe_goldens(versions):
    """Tiny random Qwen3-MoE and GLM-4.7-Flash checkpoints (bf16, hub per-expert tensor names) and their f32
    reference activations, in make_one's format plus the chosen experts of every MoE layer
    (p{i}.router.{layer}, sorted, with p{i}.router_margin.{layer})."""
    dirs = []
    for spec in MOE_MODELS:
        name, vocab = spec["name"], spec["config"]["vocab_size"]
        prompts = make_prompts(vocab)
        cls = getattr(transformers, spec["arch"])
        seed = spec["weight_seed"]
        for _ in range(MAX_TRIES):
            model = build_moe_model(spec, seed)
            res = compute(model, prompts)
            min_margin = min(min(r["margins"]) for r in res)
            if min_margin >= MIN_MARGIN:
                break
            print(f"{name}: seed {seed}: min greedy margin {min_margin:.3g} < {MIN_MARGIN}; retrying", file=sys.stderr)
            seed += 1
        else:
            raise SystemExit(f"{name}: no seed with greedy margin >= {MIN_MARGIN} in {MAX_TRIES} tries")
        for i, r in enumerate(res):
            gen = greedy_generate(model, r["ids"])
            if not torch.equal(gen, r["greedy"]):
                raise SystemExit(f"{name} p{i}: generate {gen.tolist()} != explicit loop {r['greedy'].tolist()}")
            r["routes"] = capture_routes(model, r["ids"])

        out_dir = TINY / name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        model.to(torch.bfloat16).save_pretrained(out_dir)
        del model
        if spec.get("mtp_layers"):
            add_mtp_layer(spec, out_dir, seed)
        reloaded = cls.from_pretrained(out_dir, dtype=torch.float32, attn_implementation="eager")
        reloaded.eval()
        with torch.no_grad():
            for p in reloaded.parameters():
                p.data = p.data.clone().contiguous()
        res2 = compute(reloaded, prompts)
        for i, (a, b) in enumerate(zip(res, res2)):
            for k in a["acts"]:
                if not torch.equal(a["acts"][k], b["acts"][k]):
                    raise SystemExit(f"{name} p{i}.{k}: reloaded checkpoint does not reproduce the golden")
            assert torch.equal(a["greedy"], b["greedy"])
        with safe_open(str(out_dir / "model.safetensors"), framework="pt") as f:
            keys = list(f.keys())
        assert any(".mlp.experts.0.gate_proj.weight" in k for k in keys), "expected hub per-expert names"

        tensors = {}
        for i, r in enumerate(res):
            tensors[f"p{i}.ids"] = r["ids"].to(torch.int32).contiguous()
            for l in range(spec["config"]["num_hidden_layers"]):
                tensors[f"p{i}.hidden.{l}"] = r["acts"][f"hidden.{l}"]
            tensors[f"p{i}.norm"] = r["acts"]["norm"]
            tensors[f"p{i}.logits"] = r["acts"]["logits"]
            tensors[f"p{i}.greedy"] = r["greedy"].to(torch.int32).contiguous()
            for k, v in r["routes"].items():
                tensors[f"p{i}.{k}"] = v
        meta = {"transformers": versions["transformers"], "torch": versions["torch"], "note": NOTE}
        golden = out_dir / "golden.safetensors"
        save_file(tensors, str(golden), metadata=meta)
        canonicalize_safetensors_header(golden)
        doc = {
            **meta, "model": name, "architecture": spec["arch"], "storage_dtype": "bfloat16",
            "compute_dtype": "float32", "attn_implementation": "eager", "weight_seed": seed,
            "prompt_seed": PROMPT_SEED + vocab,
            "init": {"matrix_std": MATRIX_STD, "norm_uniform": [NORM_LO, NORM_HI], "bias_std": MOE_BIAS_STD},
            "special_ids": special_ids(vocab),
            "mtp_layers": spec.get("mtp_layers", 0),
            "greedy_method": "explicit loop of 16 full forwards, argmax, EOS ignored; cross-checked equal to "
                             "model.generate(do_sample=False) (KV-cache path)",
            "min_greedy_margin": round(min_margin, 6),
            "prompts": [{"name": f"p{i}", "ids": r["ids"].tolist(), "greedy": r["greedy"].tolist(),
                         "min_greedy_margin": round(min(r["margins"]), 6)} for i, r in enumerate(res)],
            "tensors": {
                "p{i}.router.{layer}": "I32 [T, k] experts chosen by the router of MoE layer {layer}, sorted",
                "p{i}.router_margin.{layer}": "F32 [T] k-th minus (k+1)-th selection score (ties: compare only > 0)",
            },
        }
        text = json.dumps(doc, indent=2)
        text = re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
        (out_dir / "golden.json").write_text(text + "\n")
        dirs.append(out_dir)
    return dirs


def main():
    versions = {
        "transformers": transformers.__version__,
        # Public version without the local build tag (+cpu / +cu130): the CPU numerics are the same and
        # the files stay byte-identical whichever wheel variant requirements.txt resolved to.
        "torch": torch.__version__.split("+")[0],
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
    }
    print("versions:", json.dumps(versions))
    total = 0
    for spec in MODELS:
        d = make_one(spec, versions)
        for f in sorted(d.iterdir()):
            size = f.stat().st_size
            total += size
            print(f"wrote {f.relative_to(ROOT.parent)}  {size:>9} bytes  sha256 {sha256(f)[:16]}")
    d = make_image_goldens(versions)  # Qwen3-VL image preprocessing (testdata/images)
    for f in sorted(d.iterdir()):
        print(f"wrote {f.relative_to(ROOT.parent)}  {f.stat().st_size:>9} bytes  sha256 {sha256(f)[:16]}")
    d = make_qwen3vl_goldens(versions)  # tiny Qwen3-VL (testdata/tiny/qwen3vl)
    for f in sorted(d.iterdir()):
        print(f"wrote {f.relative_to(ROOT.parent)}  {f.stat().st_size:>9} bytes  sha256 {sha256(f)[:16]}")
    for d in make_qwen3next_goldens(versions):  # Qwen3-Next hybrid (testdata/tiny/qwen3next/{dense,moe})
        for f in sorted(d.iterdir()):
            size = f.stat().st_size
            total += size
            print(f"wrote {f.relative_to(ROOT.parent)}  {size:>9} bytes  sha256 {sha256(f)[:16]}")
    for d in make_moe_goldens(versions):  # Qwen3-MoE and GLM-4.7-Flash (testdata/tiny/{qwen3moe,glm4moelite})
        for f in sorted(d.iterdir()):
            size = f.stat().st_size
            total += size
            print(f"wrote {f.relative_to(ROOT.parent)}  {size:>9} bytes  sha256 {sha256(f)[:16]}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
