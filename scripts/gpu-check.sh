#!/bin/sh
# gpu-check.sh DIR: the CUDA checks, for a machine with an NVIDIA GPU and no
# Go toolchain or network. DIR is what `make gpu-check-prep` built on a
# machine with Go and nvcc (static binaries, prebuilt CUDA engines of the
# golden models); run from the repository root (the tests read testdata/).
#
#   1. the golden models on the GPU against transformers and the CPU backend
#      (logits, greedy decoding with and without CUDA graphs, batched decode,
#      the default bf16-KV engine served by the scheduler, Qwen3-Next,
#      int8/int4/fp8 engines, Qwen3-VL's vision stage and text on the GPU);
#   2. compute-sanitizer memcheck and racecheck over a few steps (if present);
#   3. benchmarks of random-weight engines of Qwen3-0.6B's and Qwen3-4B's
#      shapes at batch 1 and 64 (needs nvcc here to compile their kernels):
#      decode tok/s, TTFT, inter-token latency, % of the HBM roofline;
#   4. the GEMM benchmark: our generated matmul kernels against cuBLASLt
#      (bf16 × bf16 → f32) for Qwen3-0.6B's and Qwen3-4B's layer shapes at
#      M = 1, 16, 64, 512, if libcublasLt is found ($PIO_CUBLASLT, the
#      loader's path, /usr/local/cuda, pip wheels; under a minute).
# It ends with tables. Budget: under 9 minutes on an H100.
#
# On a lent machine (the device tool), after `make gpu-check-prep` here:
#   run  command: sh scripts/gpu-check.sh build/gpucheck   carry: ["build/gpucheck"]
# (build/ is git-ignored, so it travels only when carried; 16 MB.)
set -u
D=${1:-build/gpucheck}
[ -x "$D/cuda.test" ] || { echo "gpu-check: $D/cuda.test missing: run make gpu-check-prep first (on a machine with Go)"; exit 2; }
W=${TMPDIR:-/tmp}/pio-gpucheck.$$
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
summary="$W/summary"
: >"$summary"
row() { printf '%-34s | %s\n' "$1" "$2" >>"$summary"; }
status=0

if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
else
	echo "gpu: nvidia-smi not found"
fi

# 1. Goldens and CPU parity.
echo "== golden models on the GPU"
if ! PIO_CUDA_ENGINES="$D/engines" timeout 180 "$D/cuda.test" -test.run 'TestGPU(Golden|BatchedDecode|Serve|ServeSampled|OtherFamilies|VLGolden)$' -test.v >"$W/golden.log" 2>&1; then
	row "goldens + CPU parity" "FAIL (see log above)"
	status=1
elif grep -q -- '--- SKIP' "$W/golden.log"; then
	row "goldens + CPU parity" "SKIPPED: $(grep -m1 'skipping' "$W/golden.log" | sed 's/^ *//' | cut -c1-120)"
	status=2
else
	row "goldens + CPU parity" "PASS"
fi
grep -E '^(=== RUN|--- |    |ok|FAIL|PASS)' "$W/golden.log" | head -80

# 2. compute-sanitizer.
# compute-sanitizer ships with the CUDA toolkit, often off PATH.
for dir in "${CUDA_HOME:-/usr/local/cuda}/bin" /usr/local/cuda/bin; do
	command -v compute-sanitizer >/dev/null 2>&1 || { [ -x "$dir/compute-sanitizer" ] && PATH="$PATH:$dir"; }
done
if command -v compute-sanitizer >/dev/null 2>&1; then
	for tool in memcheck racecheck; do
		echo "== compute-sanitizer --tool $tool"
		if PIO_CUDA_ENGINES="$D/engines" timeout 180 compute-sanitizer --tool "$tool" --error-exitcode 3 \
			"$D/cuda.test" -test.run 'TestGPUBatchedDecode$' >"$W/san-$tool.log" 2>&1; then
			row "compute-sanitizer $tool" "clean"
		else
			row "compute-sanitizer $tool" "ERRORS"
			status=1
		fi
		tail -20 "$W/san-$tool.log"
	done
else
	row "compute-sanitizer" "not installed: skipped"
fi

# 3. Benchmarks of random-weight engines (kernels need nvcc on this machine).
bench=""
if grep -q 'skipping: no GPU' "$W/golden.log"; then
	row "bench" "skipped: no GPU"
elif [ -x "$D/randckpt" ]; then
	for shape in ${GPUCHECK_SHAPES:-qwen3-0.6b qwen3-4b}; do
		echo "== $shape random-weight engine"
		if ! timeout 120 "$D/randckpt" -o "$W/$shape" -shape "$shape" >"$W/rand-$shape.log" 2>&1; then
			row "bench $shape" "skipped: randckpt: $(tail -1 "$W/rand-$shape.log")"
			continue
		fi
		if ! timeout 240 "$D/pioc" build "$W/$shape" -o "$W/$shape.pio" --target cuda -q >"$W/build-$shape.log" 2>&1; then
			row "bench $shape" "skipped: pioc build --target cuda: $(tail -1 "$W/build-$shape.log")"
			rm -rf "$W/$shape"
			continue
		fi
		rm -rf "$W/$shape"
		bench="$bench${bench:+,}$W/$shape.pio"
	done
else
	row "bench" "skipped: no randckpt in $D"
fi
if [ -n "$bench" ]; then
	echo "== bench"
	PIO_BENCH_ENGINES="$bench" timeout 240 "$D/cuda.test" -test.run 'TestGPUBench$' -test.v >"$W/bench.log" 2>&1 || status=1
	tail -30 "$W/bench.log"
fi

# 4. GEMM: generated kernels vs cuBLASLt (kernels prebuilt into $D/gemm).
gemm=""
if grep -q 'skipping: no GPU' "$W/golden.log"; then
	row "GEMM vs cuBLASLt" "skipped: no GPU"
else
	echo "== GEMM: generated kernels vs cuBLASLt"
	if ! PIO_GEMM_KERNELS="$D/gemm" timeout 90 "$D/cuda.test" -test.run 'TestGPUGemmBench$' -test.v >"$W/gemm.log" 2>&1; then
		row "GEMM vs cuBLASLt" "FAIL (see log above)"
		status=1
	elif grep -q -- '--- SKIP' "$W/gemm.log"; then
		row "GEMM vs cuBLASLt" "SKIPPED: $(grep -m1 'skipping' "$W/gemm.log" | sed 's/^ *//' | cut -c1-120)"
	else
		row "GEMM vs cuBLASLt" "PASS"
	fi
	grep -Ev '^GEMM' "$W/gemm.log" | tail -15
	grep -q '^GEMM ' "$W/gemm.log" && gemm=1
fi

echo
echo "== summary"
cat "$summary"
if [ -n "$bench" ]; then
	echo
	echo "engine | batch | TTFT ms | ITL ms | decode tok/s | % HBM roofline | copy GB/s | device"
	echo "--- | --- | --- | --- | --- | --- | --- | ---"
	grep '^BENCH ' "$W/bench.log" | sed 's/^BENCH //'
fi
if [ -n "$gemm" ]; then
	echo
	grep -E '^GEMM ' "$W/gemm.log" | sed 's/^GEMM //'
fi
exit $status
