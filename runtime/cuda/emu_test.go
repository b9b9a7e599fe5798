package cuda

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ebitengine/purego"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// The emulation tests run the whole CUDA backend — purego bindings, launch
// table, parameter packing, step metadata, and every generated kernel — on
// the CPU: testdata/emu/fakecuda.cc stands in for libcuda, and the module
// is compiled by g++ with testdata/emu/emu.h, which runs each CUDA thread
// as a fiber with real barriers and warp shuffles. They need g++, not a
// GPU. Graph capture is emulated as the driver does it (each launch's
// parameters copied when captured). What they cannot show: timing, the
// code nvcc makes, the driver's own behaviour.

// fake is the emulated driver, loaded once per process: modules resolve the
// emulator's globals (the running fiber) against the first copy loaded.
var fake struct {
	once sync.Once
	d    *driver
	err  error
}

// useFakeDriver makes loadDriver return the emulated driver for one test.
func useFakeDriver(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping the CUDA emulation in -short mode")
	}
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("skipping: no g++ to build the CUDA emulation")
	}
	fake.once.Do(func() {
		dir, err := os.MkdirTemp("", "pio-fakecuda-")
		if err != nil {
			fake.err = err
			return
		}
		defer os.RemoveAll(dir) // the mapping outlives the file
		so := filepath.Join(dir, "fakecuda.so")
		if out, err := exec.Command(gxx, "-O2", "-shared", "-fPIC", "-o", so, "testdata/emu/fakecuda.cc").CombinedOutput(); err != nil {
			fake.err = fmt.Errorf("g++ fakecuda: %v\n%s", err, out)
			return
		}
		lib, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			fake.err = err
			return
		}
		d := &driver{}
		if fake.err = bind(d, lib); fake.err == nil {
			fake.d = d
		}
	})
	if fake.err != nil {
		t.Fatal(fake.err)
	}
	saved, savedErr := loaded, loadErr
	loaded, loadErr = fake.d, nil
	loadOnce.Do(func() {}) // loadDriver returns loaded from now on
	t.Cleanup(func() {
		loadOnce, loaded, loadErr = sync.Once{}, saved, savedErr
		if saved != nil || savedErr != nil {
			loadOnce.Do(func() {})
		}
	})
	return gxx
}

// emuKernels compiles a plan's module for the emulator and returns the
// kernels section whose one image is the path of the shared object.
func emuKernels(t *testing.T, gxx string, p *ir.Plan) *engine.Kernels {
	t.Helper()
	m, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	src.WriteString(m.Source)
	src.WriteString("\n#include \"invoke.h\"\n")
	for _, k := range m.Kernels {
		fmt.Fprintf(&src, "PIO_KERNEL(%s)\n", k)
	}
	so := emuBuild(t, gxx, src.String())
	return compiler.KernelsOf(m, []abi.Image{{Arch: "sm_80", Data: append([]byte(so), 0)}}, "g++ emulation")
}

// emuBuild compiles a module's source, with its PIO_KERNEL entry points,
// for the emulator with gxx and returns the shared object's path.
func emuBuild(t *testing.T, gxx, src string) string {
	t.Helper()
	dir := t.TempDir()
	cu, so := filepath.Join(dir, "module.cc"), filepath.Join(dir, "module.so")
	if err := os.WriteFile(cu, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	emu, _ := filepath.Abs("testdata/emu")
	cmd := exec.Command(gxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-Wno-unknown-pragmas", "-I", emu, "-include", filepath.Join(emu, "emu.h"), "-o", so, cu)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("g++ module: %v\n%s", err, out)
	}
	return so
}

// emuBackends builds a golden model's engine and returns the emulated
// CUDA backend and the CPU backend over it. The KV cache is f32 whatever
// dt: parity within 1e-4 needs both backends to cache the same values, and
// a bf16 cache rounds K/V each backend computed in its own summation order
// (kvcache_emu_test.go tests bf16 caches).
func emuBackends(t *testing.T, gxx, model string, dt ir.DType, noFuse bool) (*Backend, *cpu.Backend, *golden.Model, *engine.Engine) {
	t.Helper()
	return emuBackendsKV(t, gxx, model, dt, ir.F32, noFuse)
}

// emuBackendsKV is emuBackends with the paged caches stored as kv
// (ir.DInvalid: pioc's default).
func emuBackendsKV(t *testing.T, gxx, model string, dt, kv ir.DType, noFuse bool) (*Backend, *cpu.Backend, *golden.Model, *engine.Engine) {
	t.Helper()
	e, g := emuEngine(t, gxx, model, compiler.Options{DType: dt, KVDType: kv, NoFuse: noFuse})
	gpu, ref := engineBackends(t, e, Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4})
	return gpu, ref, g, e
}

// TestEmulatedGolden: the emulated CUDA backend's logits match
// transformers (the CPU backend's tolerances) and the CPU backend (1e-4:
// f32 compute both ways, summation order differs), and greedy decoding
// gives the CPU backend's tokens.
func TestEmulatedGolden(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, c := range []struct {
		model  string
		dt     ir.DType
		tol    float64
		noFuse bool
	}{{"qwen3-a", ir.BF16, 1e-4, false}, {"qwen3-b", ir.F32, 1e-4, false}, {"qwen3-a", ir.F32, 1e-4, true}} {
		t.Run(fmt.Sprintf("%s/%v/nofuse=%v", c.model, c.dt, c.noFuse), func(t *testing.T) {
			gpu, ref, g, e := emuBackends(t, gxx, c.model, c.dt, c.noFuse)
			if gpu.Image != "sm_80" || gpu.CC != 80 {
				t.Errorf("image %s for cc %d", gpu.Image, gpu.CC)
			}
			for pi, p := range g.Prompts {
				got, want := forward(t, gpu, p.IDs), forward(t, ref, p.IDs)
				if e := golden.RelErr(got, p.Logits); e > c.tol {
					t.Errorf("prompt %d: logits vs transformers: relative error %.3g > %g", pi, e, c.tol)
				}
				if e := golden.RelErr(got, want); e > 1e-4 {
					t.Errorf("prompt %d: logits vs CPU backend: relative error %.3g", pi, e)
				}
			}
			p := g.Prompts[0]
			for _, graphs := range []bool{true, false} {
				gpu2, err := FromEngine(e, Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4, NoGraphs: !graphs})
				if err != nil {
					t.Fatal(err)
				}
				var toks [2][]int32
				for i, be := range []runtime.Backend{gpu2, ref} {
					gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
					toks[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: 6}, nil)
					if err != nil {
						t.Fatal(err)
					}
				}
				if graphs && len(gpu2.graphs) != 1 {
					t.Errorf("%d decode graphs captured, want 1", len(gpu2.graphs))
				}
				gpu2.Close()
				if !slices.Equal(toks[0], toks[1]) {
					t.Errorf("greedy (graphs %v): emulated CUDA %v, CPU %v", graphs, toks[0], toks[1])
				}
				if len(p.Greedy) >= 6 && !slices.Equal(toks[0], p.Greedy[:6]) {
					t.Errorf("greedy (graphs %v): emulated CUDA %v, transformers %v", graphs, toks[0], p.Greedy[:6])
				}
			}
		})
	}
}

// TestEmulatedBatchedDecode: two sequences prefilled in one step (several
// prefill tiles), then decoding together (the split attention kernels and
// the combine, S = 2), agree with the CPU backend; the device argmax picks
// the CPU's tokens.
func TestEmulatedBatchedDecode(t *testing.T) {
	gxx := useFakeDriver(t)
	gpu, ref, _, _ := emuBackends(t, gxx, "qwen3-a", ir.F32, false)
	a, b := []int32{5, 9, 2, 7, 7, 1, 3, 8, 8, 2, 4, 6, 1, 9, 9, 3, 2, 2, 5, 7}, []int32{11, 4, 8}
	blocks := [][]int32{{7, 1, 2, 3, 9, 10, 11}, {4, 5, 6, 0}}
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
	got, want := step(gpu, [][]int32{a, b}, []int{0, 0}), step(ref, [][]int32{a, b}, []int{0, 0})
	if e := golden.RelErr(got, want); e > 1e-4 {
		t.Fatalf("batched prefill: relative error %.3g", e)
	}
	pos := []int{len(a), len(b)}
	next := [][]int32{{3}, {6}}
	for i := 0; i < 4; i++ {
		got, want := step(gpu, next, pos), step(ref, next, pos)
		if e := golden.RelErr(got, want); e > 1e-4 {
			t.Fatalf("decode step %d: relative error %.3g", i, e)
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

// TestEmulatedBench runs Bench end to end on the emulator: the numbers are
// meaningless there, but the measurement's bookkeeping is checked.
func TestEmulatedBench(t *testing.T) {
	gxx := useFakeDriver(t)
	e, _ := emuEngine(t, gxx, "qwen3-b", compiler.Options{DType: ir.BF16})
	r, err := Bench(e, BenchOptions{Prompt: 8, Decode: 3, Batch: 2, Runs: 1, CopyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var wb int64
	for _, w := range e.Meta.Plan.Weights {
		n, _ := w.Shape.Elems(0, 0)
		wb += n * 2
	}
	if r.WeightBytes != wb || r.Batch != 2 || r.GraphsCaptured != 1 || !(r.ITLms > 0) || !(r.TTFTms > 0) || !(r.CopyGBs > 0) || !(r.RooflinePct > 0) {
		t.Errorf("bench result %+v (weights %d B)", r, wb)
	}
	if d := r.TokPerS - 2/(r.ITLms/1000); d > 1e-6*r.TokPerS || d < -1e-6*r.TokPerS {
		t.Errorf("tok/s %.3f is not batch/ITL", r.TokPerS)
	}
}

// TestEmulatedOps runs templates Qwen3 does not use against the CPU
// backend: interleaved and partial RoPE (neox too), sigmoid, a unit-offset
// RMSNorm, and a matmul whose K is not a multiple of 8 (the scalar path).
func TestEmulatedOps(t *testing.T) {
	gxx := useFakeDriver(t)
	b := ir.NewBuilder("ops")
	tokens := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	x := b.Embedding(b.Weight("table", ir.BF16, 16, 48), tokens)
	h := b.Reshape(x, ir.T, 4, 12)
	r1 := b.RoPE(h, pos, ir.RoPEOpts{Theta: 10000, RotaryDims: 8, Style: "interleaved"})
	r2 := b.RoPE(h, pos, ir.RoPEOpts{Theta: 500, RotaryDims: 6, Style: "neox"})
	m := b.Mul(b.Sigmoid(b.Reshape(r1, ir.T, 48)), b.Reshape(r2, ir.T, 48))
	n := b.RMSNorm(m, b.Weight("norm", ir.F32, 48), 1e-5, true)
	y := b.MatMul(b.MatMul(n, b.Weight("w1", ir.BF16, 20, 48)), b.Weight("w2", ir.F32, 12, 20))
	b.Output("y", y)
	p := loweredPlan(t, b)
	var ws []Weight
	var cws []cpu.Weight
	for i, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		data := make([]byte, n*int64(w.DType.Size()))
		for j := int64(0); j < n; j++ {
			v := float32(((j*7919+int64(i)*31)%97)-48) / 64
			bits := math.Float32bits(v)
			if w.DType == ir.BF16 {
				binary.LittleEndian.PutUint16(data[2*j:], uint16(bits>>16))
			} else {
				binary.LittleEndian.PutUint32(data[4*j:], bits)
			}
		}
		shape := make([]int64, len(w.Shape))
		for j, d := range w.Shape {
			shape[j] = int64(d)
		}
		ws = append(ws, Weight{DType: w.DType, Shape: shape, Data: data})
		cws = append(cws, cpu.Weight{DType: w.DType, Shape: shape, Data: data})
	}
	gpu, err := New(p, ws, emuKernels(t, gxx, p), Options{MaxTokens: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	ref, err := cpu.New(p, cws, cpu.Options{MaxTokens: 32})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, T := range []int{3, 21} { // 21 rows: the tiled matmul
		bt := &runtime.Batch{Seqs: []runtime.SeqView{{}}, LogitRows: []int32{0}}
		for i := 0; i < T; i++ {
			bt.Tokens = append(bt.Tokens, int32(i*5%16))
			bt.Positions = append(bt.Positions, int32(100+i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
		}
		var outs [2][]float32
		for i, be := range []runtime.Backend{gpu, ref} {
			if err := be.Step(bt); err != nil {
				t.Fatal(err)
			}
			o, _, err := be.Output("y")
			if err != nil {
				t.Fatal(err)
			}
			outs[i] = slices.Clone(o)
		}
		if e := golden.RelErr(outs[0], outs[1]); e > 1e-5 || len(outs[0]) != T*12 {
			t.Errorf("T=%d: emulated CUDA vs CPU relative error %.3g (%d values)", T, e, len(outs[0]))
		}
	}
}
