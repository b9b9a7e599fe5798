package cuda

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/scheduler"
)

// The GPU tests need a CUDA driver and a GPU, and CUDA engines: built here
// with nvcc, or prebuilt into $PIO_CUDA_ENGINES as <model>.<dtype>.pio
// (make gpu-check carries them to a machine without Go or nvcc).

func needGPU(t *testing.T) {
	t.Helper()
	if _, err := loadDriver(); err != nil {
		t.Skipf("skipping: no GPU: %v", err)
	}
}

// cudaEngine opens (building if need be) the CUDA engine of a golden model,
// with an f32 KV cache for the parity checks.
func cudaEngine(t *testing.T, model string, dt ir.DType) *engine.Engine {
	t.Helper()
	return cudaEngineKV(t, model, dt, ir.F32, "")
}

// cudaEngineKV is cudaEngine with the KV cache dtype (ir.DInvalid: pioc's
// default) and the prebuilt file's suffix after the dtype.
func cudaEngineKV(t *testing.T, model string, dt, kv ir.DType, suffix string) *engine.Engine {
	t.Helper()
	return cudaEngineOpt(t, model, fmt.Sprintf("%s.%v%s.pio", strings.ReplaceAll(model, "/", "-"), dt, suffix), compiler.Options{DType: dt, KVDType: kv})
}

// cudaEngineOpt opens file from $PIO_CUDA_ENGINES (make gpu-check-prep
// builds them) or, with nvcc here, builds the golden model with opt.
func cudaEngineOpt(t *testing.T, model, file string, opt compiler.Options) *engine.Engine {
	t.Helper()
	path := ""
	if dir := os.Getenv("PIO_CUDA_ENGINES"); dir != "" {
		path = filepath.Join(dir, file)
	}
	if _, err := os.Stat(path); path == "" || err != nil {
		if _, err := cg.FindNVCC(); err != nil {
			t.Skipf("skipping: no prebuilt engine in $PIO_CUDA_ENGINES and %v", err)
		}
		g, err := golden.Load(model)
		if err != nil {
			t.Fatal(err)
		}
		path = filepath.Join(t.TempDir(), "e.pio")
		opt.Source, opt.Output, opt.Target = g.Dir, path, compiler.TargetCUDA
		if _, err := compiler.Build(opt); err != nil {
			t.Fatal(err)
		}
	}
	e, err := engine.Open(path, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// forward runs one prefill step of the whole prompt keeping every row.
func forward(t *testing.T, be runtime.Backend, ids []int32) []float32 {
	t.Helper()
	n := len(ids)
	b := &runtime.Batch{Tokens: ids, Seqs: []runtime.SeqView{{}}}
	for i := 0; i < n; i++ {
		b.Positions = append(b.Positions, int32(i))
		b.SeqOfToken = append(b.SeqOfToken, 0)
		b.LogitRows = append(b.LogitRows, int32(i))
	}
	for i := 0; i < (n+3)/4; i++ {
		b.Seqs[0].Blocks = append(b.Seqs[0].Blocks, int32(i))
	}
	if err := be.Step(b); err != nil {
		t.Fatal(err)
	}
	out, _, err := be.Output("logits")
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(out)
}

// TestGPUGolden: CUDA logits of every prompt of every golden model match
// transformers within the CPU backend's tolerances (bf16 engines: 3e-2,
// f32: 1e-3, since GPU sums in another order) and the CPU backend within
// 1e-3; greedy decoding (prefill, then CUDA-graph decode steps) gives the
// CPU backend's tokens, with graphs and without.
func TestGPUGolden(t *testing.T) {
	needGPU(t)
	for _, model := range []string{"qwen3-a", "qwen3-b", "qwen3moe", "glm4moelite"} {
		for _, dt := range []ir.DType{ir.F32, ir.BF16} {
			t.Run(fmt.Sprintf("%s/%v", model, dt), func(t *testing.T) {
				g, err := golden.Load(model)
				if err != nil {
					t.Fatal(err)
				}
				e := cudaEngine(t, model, dt)
				opt := Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4}
				gpu, ref := engineBackends(t, e, opt)
				t.Logf("device %s (cc %d), image %s", gpu.Name, gpu.CC, gpu.Image)
				tol := 1e-3
				if dt == ir.BF16 {
					tol = 3e-2
				}
				for pi, p := range g.Prompts {
					got, want := forward(t, gpu, p.IDs), forward(t, ref, p.IDs)
					if e := golden.RelErr(got, p.Logits); e > tol {
						t.Errorf("prompt %d: logits vs transformers: relative error %.3g > %g", pi, e, tol)
					}
					if e := golden.RelErr(got, want); e > 1e-3 {
						t.Errorf("prompt %d: logits vs CPU backend: relative error %.3g", pi, e)
					}
				}
				for _, graphs := range []bool{true, false} {
					gpu2, err := FromEngine(e, Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4, NoGraphs: !graphs})
					if err != nil {
						t.Fatal(err)
					}
					for pi, p := range g.Prompts {
						var toks [2][]int32
						for i, be := range []runtime.Backend{gpu2, ref} {
							gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
							toks[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: 12}, nil)
							if err != nil {
								t.Fatal(err)
							}
						}
						if !slices.Equal(toks[0], toks[1]) {
							t.Errorf("prompt %d, graphs %v: greedy CUDA %v, CPU %v", pi, graphs, toks[0], toks[1])
						}
					}
					gpu2.Close()
				}
			})
		}
	}
}

// TestGPUBatchedDecode: two sequences decoding in one step (the split
// attention kernels, a batch-2 graph) agree with the CPU backend.
func TestGPUBatchedDecode(t *testing.T) {
	needGPU(t)
	e := cudaEngine(t, "qwen3-a", ir.F32)
	gpu, ref := engineBackends(t, e, Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4})
	// Prefill both sequences in one step (2 tiles or more), then 6 batched decode steps.
	a, b := []int32{5, 9, 2, 7, 7, 1, 3}, []int32{11, 4, 8}
	blocks := [][]int32{{0, 1, 2, 3}, {4, 5, 6, 7}}
	step := func(be runtime.Backend, toks [][]int32, start []int) []float32 {
		var bt runtime.Batch
		for s, ts := range toks {
			for i, tok := range ts {
				bt.Tokens = append(bt.Tokens, tok)
				bt.Positions = append(bt.Positions, int32(start[s]+i))
				bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
			}
			bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
			bt.Seqs = append(bt.Seqs, runtime.SeqView{Blocks: blocks[s]})
		}
		if err := be.Step(&bt); err != nil {
			t.Fatal(err)
		}
		out, _, err := be.Output("logits")
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(out)
	}
	for _, be := range []runtime.Backend{gpu, ref} {
		_ = step(be, [][]int32{a, b}, []int{0, 0})
	}
	pos := []int{len(a), len(b)}
	next := [][]int32{{3}, {6}}
	for i := 0; i < 6; i++ {
		got, want := step(gpu, next, pos), step(ref, next, pos)
		if e := golden.RelErr(got, want); e > 1e-3 {
			t.Fatalf("decode step %d: CUDA vs CPU relative error %.3g", i, e)
		}
		ids, err := gpu.Argmax()
		if err != nil {
			t.Fatal(err)
		}
		v := len(want) / 2
		for s := range ids {
			if w := int32(argmax(want[s*v : (s+1)*v])); ids[s] != w {
				t.Errorf("decode step %d seq %d: device argmax %d, CPU %d", i, s, ids[s], w)
			}
		}
		next = [][]int32{{ids[0]}, {ids[1]}}
		pos[0]++
		pos[1]++
	}
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// TestGPUBench measures the engines listed in $PIO_BENCH_ENGINES (comma
// separated) at the batch sizes of $PIO_BENCH_BATCHES (default 1,64) and
// prints one "BENCH" line each; make gpu-check tabulates them.
func TestGPUBench(t *testing.T) {
	list := os.Getenv("PIO_BENCH_ENGINES")
	if list == "" {
		t.Skip("skipping: set PIO_BENCH_ENGINES to benchmark engines")
	}
	needGPU(t)
	batches := []int{1, 64}
	if s := os.Getenv("PIO_BENCH_BATCHES"); s != "" {
		batches = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			batches = append(batches, n)
		}
	}
	for _, path := range strings.Split(list, ",") {
		e, err := engine.Open(path, engine.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range batches {
			r, err := Bench(e, BenchOptions{Batch: b})
			if err != nil {
				t.Errorf("%s batch %d: %v", path, b, err)
				continue
			}
			fmt.Printf("BENCH %s | %d | %.1f | %.2f | %.0f | %.1f | %.0f | %s %s\n",
				filepath.Base(path), b, r.TTFTms, r.ITLms, r.TokPerS, r.RooflinePct, r.CopyGBs, r.Device, r.Image)
		}
		e.Close()
	}
}

// TestGPUServe: the engine users get by default (bf16 weights, bf16 KV
// cache) served by the continuous-batching scheduler on the GPU (see
// serveParity).
func TestGPUServe(t *testing.T) {
	needGPU(t)
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	e := cudaEngineKV(t, "qwen3-a", ir.BF16, ir.DInvalid, ".default")
	if c := e.Meta.Plan.Caches; len(c) == 0 || c[0].DType != ir.BF16 {
		t.Fatalf("default engine's caches %+v: want bf16", c)
	}
	gpu, ref := engineBackends(t, e, Options{MaxTokens: 64, NumBlocks: 128, BlockSize: 4, MaxSeqs: 8})
	serveParity(t, gpu, ref, g, 128, 4, 8)
}

// TestGPUServeSampled: the candidates kernel against the Go reference on
// the GPU (the model's logits and synthetic rows: NaN, infinities, ties,
// lists at and past the limit), then seeded sampling requests served by
// the scheduler from the device's candidates, with no logits downloaded,
// give the CPU backend's tokens (f32 engine and KV cache; see
// serveSampled).
func TestGPUServeSampled(t *testing.T) {
	needGPU(t)
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	e := cudaEngine(t, "qwen3-a", ir.F32)
	gpu, ref := engineBackends(t, e, Options{MaxTokens: 64, NumBlocks: 128, BlockSize: 4, MaxSeqs: 8})
	checkCandidates(t, gpu)
	serveSampled(t, gpu, ref, g, 128, 4, 8, 0)
	serveSampled(t, gpu, ref, g, 128, 4, 8, 4)
}

// serveParity serves the golden prompts at once, twice, through the
// continuous-batching scheduler on each backend — so decode runs batched
// (through CUDA graphs), greedy tokens come from the backend's argmax and
// the repeat hits the prefix cache — and checks that the CUDA backend gives
// the CPU backend's tokens, and that those are transformers' greedy
// continuation (the golden models' continuations survive a bf16 KV cache).
func serveParity(t *testing.T, gpu *Backend, ref runtime.Backend, g *golden.Model, blocks, bs, maxSeqs int) {
	t.Helper()
	var reqs []scheduler.Request
	for round := 0; round < 2; round++ {
		for _, p := range g.Prompts {
			reqs = append(reqs, scheduler.Request{Prompt: p.IDs, MaxTokens: len(p.Greedy)})
		}
	}
	cfg := scheduler.Config{MaxStepTokens: 64, MaxSeqs: maxSeqs}
	got, want := serveAll(t, gpu, blocks, bs, cfg, reqs), serveAll(t, ref, blocks, bs, cfg, reqs)
	for i := range got {
		p := g.Prompts[i%len(g.Prompts)]
		if len(got[i]) != len(p.Greedy) || !slices.Equal(got[i], want[i]) {
			t.Errorf("request %d: CUDA %v, CPU %v", i, got[i], want[i])
		}
		if !slices.Equal(want[i], p.Greedy) {
			t.Errorf("request %d: CPU backend %v, transformers %v", i, want[i], p.Greedy)
		}
	}
}

// TestGPUOtherFamilies: the tiny dense Qwen3-Next (DeltaNet conv and delta
// rule, chunked over 64-token chunks and recurrent, gated attention, state
// slots) and the quantized Qwen3s (int8, int4, fp8 matmul_q) give the CPU
// backend's logits on the GPU for every golden prompt (1e-3) and its greedy
// tokens through CUDA graphs.
func TestGPUOtherFamilies(t *testing.T) {
	needGPU(t)
	for _, c := range []struct{ model, file, quant string }{
		{"qwen3next/dense", "qwen3next-dense.f32.pio", ""},
		{"qwen3-a", "qwen3-a.int8.pio", "int8"},
		{"qwen3-a", "qwen3-a.int4.pio", "int4"},
		{"qwen3-a", "qwen3-a.fp8.pio", "fp8"},
	} {
		t.Run(c.file, func(t *testing.T) {
			g, err := golden.Load(c.model)
			if err != nil {
				t.Fatal(err)
			}
			e := cudaEngineOpt(t, c.model, c.file, compiler.Options{DType: ir.F32, KVDType: ir.F32, Quant: c.quant})
			opt := Options{MaxTokens: 160, NumBlocks: 96, BlockSize: 4, MaxSeqs: 4}
			gpu, ref := engineBackends(t, e, opt)
			for pi, p := range g.Prompts {
				if len(p.IDs) > opt.MaxTokens {
					continue
				}
				if e := golden.RelErr(forward(t, gpu, p.IDs), forward(t, ref, p.IDs)); e > 1e-3 {
					t.Errorf("prompt %d (%d tokens): logits vs CPU backend: relative error %.3g", pi, len(p.IDs), e)
				}
			}
			p := g.Prompts[len(g.Prompts)/2]
			var toks [2][]int32
			for i, be := range []runtime.Backend{gpu, ref} {
				gen := modeltest.NewGenerator(be, kvcache.NewAllocator(96, 4), 128)
				toks[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: 8}, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(toks[0], toks[1]) {
				t.Errorf("greedy: CUDA %v, CPU %v", toks[0], toks[1])
			}
		})
	}
}

// TestGPUVLGolden: Qwen3-VL's vision stage and text plan both on the GPU,
// through pio, give transformers' greedy continuation of the two-image
// prompt (see vlPioGolden).
func TestGPUVLGolden(t *testing.T) {
	needGPU(t)
	path := filepath.Join(os.Getenv("PIO_CUDA_ENGINES"), "qwen3vl.bf16.pio")
	if _, err := os.Stat(path); os.Getenv("PIO_CUDA_ENGINES") == "" || err != nil {
		if _, err := cg.FindNVCC(); err != nil {
			t.Skipf("skipping: no prebuilt engine in $PIO_CUDA_ENGINES and %v", err)
		}
		path = filepath.Join(t.TempDir(), "vl.pio")
		if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: path, DType: ir.BF16, Target: compiler.TargetCUDA}); err != nil {
			t.Fatal(err)
		}
	}
	vlPioGolden(t, path)
}
