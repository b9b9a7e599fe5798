package cuda

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
)

// The GEMM benchmark puts the matmul kernels codegen/cuda generates next
// to cuBLASLt (cublaslt.go) on the same device, for the layer shapes of
// real models, so that the choice between them (docs/design.md) is made
// with numbers. Ours runs exactly the launches the backend would pick for
// the row count (Launch.Runs: the warp GEMV up to cg.WarpMaxRows rows, the
// tiled or tensor-core kernel above); cuBLASLt runs bf16 × bf16 → f32 with
// f32 accumulation on the same bf16 weights. Our kernels read x as f32,
// cuBLASLt as bf16: x's values are exact in bf16, so both compute the same
// product, and converting x is not timed (a real integration would pay a
// conversion pass, or have the producer write bf16).

// gemmShape is one GEMM of a layer: W is [N, K].
type gemmShape struct {
	layer string
	n, k  int
}

// gemmModel is the GEMMs of one model's layer and its LM head.
type gemmModel struct {
	name   string
	shapes []gemmShape
}

// qwen3Gemms lists a Qwen3 dense model's GEMMs: fused QKV, O, fused
// gate/up (the plain matmul: the fused kernel's SwiGLU epilogue is not
// part of the comparison), down and the LM head.
func qwen3Gemms(name string, hidden, inter, heads, kvHeads, headDim, vocab int) gemmModel {
	q, kv := heads*headDim, kvHeads*headDim
	return gemmModel{name, []gemmShape{
		{"qkv", q + 2*kv, hidden}, {"o", hidden, q}, {"gate_up", 2 * inter, hidden}, {"down", hidden, inter}, {"lm_head", vocab, hidden},
	}}
}

// gemmModels are the shapes of cmd/internal/randckpt's qwen3-0.6b and
// qwen3-4b (the models' config.json).
var gemmModels = []gemmModel{
	qwen3Gemms("qwen3-0.6b", 1024, 3072, 16, 8, 128, 151936),
	qwen3Gemms("qwen3-4b", 2560, 9728, 32, 8, 128, 151936),
}

// gemmPlan is a plan of one matmul per shape: y.<layer> = x.<layer> ·
// w.<layer>ᵀ, x an f32 [T, K] input, w a bf16 [N, K] weight.
func gemmPlan(m gemmModel) (*ir.Plan, error) {
	b := ir.NewBuilder("gemm-" + m.name)
	for _, s := range m.shapes {
		x := b.Input("x."+s.layer, ir.F32, ir.T, ir.Dim(s.k))
		w := b.Weight("w."+s.layer, ir.BF16, ir.Dim(s.n), ir.Dim(s.k))
		b.Output("y."+s.layer, b.MatMul(x, w))
	}
	g, err := b.Finish()
	if err != nil {
		return nil, err
	}
	return passes.Lower(g)
}

// gemmRow is one measurement: median µs of each side.
type gemmRow struct {
	model, layer string
	m, n, k      int
	kernel       string // our launches at this M
	ours, lt     float64
	relDiff      float64 // max |ours − cuBLASLt| / max |cuBLASLt|
}

// String is the row of make gpu-check's table (see gemmHeader).
func (r gemmRow) String() string {
	flop := 2 * float64(r.m) * float64(r.n) * float64(r.k)
	wb, yb := 2*float64(r.n)*float64(r.k), 4*float64(r.m)*float64(r.n)
	ourB, ltB := wb+yb+4*float64(r.m)*float64(r.k), wb+yb+2*float64(r.m)*float64(r.k)
	return fmt.Sprintf("%s | %s | %d | %d×%d | %.1f | %.1f | %.2f | %.0f | %.0f | %.1f | %.1f | %s | %.1e",
		r.model, r.layer, r.m, r.n, r.k, r.ours, r.lt, r.ours/r.lt,
		ourB/r.ours/1e3, ltB/r.lt/1e3, flop/r.ours/1e6, flop/r.lt/1e6, r.kernel, r.relDiff)
}

// gemmHeader heads the table of gemmRow lines.
const gemmHeader = "model | layer | M | N×K | ours µs | cuBLASLt µs | ours/cuBLASLt | ours GB/s | cuBLASLt GB/s | ours TFLOP/s | cuBLASLt TFLOP/s | our kernel | max rel diff"

// gemmBenchOptions configure gemmBench.
type gemmBenchOptions struct {
	ms           []int  // row counts
	warmup, runs int    // runs before timing, timed runs (the median counts)
	flush        uint64 // bytes memset before each timed run (evicts L2)
	workspace    uint64 // cuBLASLt workspace bytes
}

// gemmBench measures every shape of a model at every M. Weights are
// random bf16 in ±[2⁻⁷, 1); x is random and exact in bf16. Each timed run
// is a memset of o.flush bytes (so weights come from HBM, as in decode,
// and the queue is busy while the run is enqueued), then an event, the
// launches, an event.
func gemmBench(lt *cublasLt, mod gemmModel, p *ir.Plan, kern *engine.Kernels, o gemmBenchOptions) ([]gemmRow, error) {
	maxM := slices.Max(o.ms)
	ws := make([]Weight, len(p.Weights))
	var largest int64
	for _, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		largest = max(largest, n)
	}
	data := randomBF16(largest)
	for i, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		ws[i] = Weight{DType: w.DType, Shape: []int64{int64(w.Shape[0]), int64(w.Shape[1])}, Data: data[:2*n]}
	}
	be, err := New(p, ws, kern, Options{MaxTokens: maxM, MaxSeqs: 1, NumBlocks: 1, NoGraphs: true})
	if err != nil {
		return nil, err
	}
	defer be.Close()
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	d := be.d
	if err := d.check(d.cuCtxSetCurrent(be.ctx), "cuCtxSetCurrent"); err != nil {
		return nil, err
	}
	var h uintptr
	if err := ltCheck(lt.create(&h), "cublasLtCreate"); err != nil {
		return nil, err
	}
	defer lt.destroy(h)
	wsDev, err := be.alloc(o.workspace, "cuBLASLt workspace")
	if err != nil {
		return nil, err
	}
	flush, err := be.alloc(o.flush, "L2 flush")
	if err != nil {
		return nil, err
	}
	var maxMK, maxMN int
	for _, s := range mod.shapes {
		maxMK, maxMN = max(maxMK, maxM*s.k), max(maxMN, maxM*s.n)
	}
	xDev, err := be.alloc(uint64(2*maxMK), "bf16 x")
	if err != nil {
		return nil, err
	}
	yDev, err := be.alloc(uint64(4*maxMN), "cuBLASLt y")
	if err != nil {
		return nil, err
	}
	evs := make([]uintptr, 2*o.runs)
	for i := range evs {
		if err := d.check(d.cuEventCreate(&evs[i], 0), "cuEventCreate"); err != nil {
			return nil, err
		}
		defer d.cuEventDestroy(evs[i])
	}
	// measure runs f o.warmup times, then o.runs times between events, and
	// returns the median in µs.
	measure := func(f func() error) (float64, error) {
		for i := 0; i < o.warmup; i++ {
			if err := f(); err != nil {
				return 0, err
			}
		}
		for i := 0; i < o.runs; i++ {
			if err := d.check(d.cuMemsetD8(flush, uint8(i), o.flush), "L2 flush"); err != nil {
				return 0, err
			}
			if err := d.check(d.cuEventRecord(evs[2*i], be.stream), "cuEventRecord"); err != nil {
				return 0, err
			}
			if err := f(); err != nil {
				return 0, err
			}
			if err := d.check(d.cuEventRecord(evs[2*i+1], be.stream), "cuEventRecord"); err != nil {
				return 0, err
			}
		}
		if err := d.check(d.cuEventSynchronize(evs[len(evs)-1]), "cuEventSynchronize"); err != nil {
			return 0, err
		}
		us := make([]float64, o.runs)
		for i := range us {
			var ms float32
			if err := d.check(d.cuEventElapsedTime(&ms, evs[2*i], evs[2*i+1]), "cuEventElapsedTime"); err != nil {
				return 0, err
			}
			us[i] = float64(ms) * 1000
		}
		slices.Sort(us)
		return us[len(us)/2], nil
	}
	var rows []gemmRow
	for _, m := range o.ms {
		bt := &runtime.Batch{Seqs: []runtime.SeqView{{}}, LogitRows: []int32{0}, Inputs: map[string]runtime.Input{}}
		for i := 0; i < m; i++ {
			bt.Tokens = append(bt.Tokens, 0)
			bt.Positions = append(bt.Positions, int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
		}
		xs := map[string][]float32{}
		for i, s := range mod.shapes {
			xs[s.layer] = testValues(m*s.k, uint32(1000*m+i))
			bt.Inputs["x."+s.layer] = runtime.Input{F32: xs[s.layer]}
		}
		if err := be.Step(bt); err != nil { // every GEMM once, with the backend's own launch path
			return nil, fmt.Errorf("%s M=%d: %w", mod.name, m, err)
		}
		if err := d.check(d.cuCtxSetCurrent(be.ctx), "cuCtxSetCurrent"); err != nil {
			return nil, err
		}
		for _, s := range mod.shapes {
			r := gemmRow{model: mod.name, layer: s.layer, m: m, n: s.n, k: s.k}
			step, wi := gemmStep(p, "y."+s.layer)
			if step < 0 {
				return nil, fmt.Errorf("%s: no matmul step writes y.%s", mod.name, s.layer)
			}
			ours, _, err := be.Output("y." + s.layer)
			if err != nil {
				return nil, err
			}
			ours = slices.Clone(ours)
			xb := bf16Bytes(xs[s.layer])
			if err := d.check(d.cuMemcpyHtoD(xDev, unsafe.Pointer(&xb[0]), uint64(len(xb))), "upload bf16 x"); err != nil {
				return nil, err
			}
			g, err := lt.newGemm(h, m, s.n, s.k, [2]int32{ltOpT, ltOpN}, wsDev, o.workspace)
			if err != nil {
				return nil, fmt.Errorf("%s %s M=%d: %w", mod.name, s.layer, m, err)
			}
			wDev := be.a.weights[wi]
			runLt := func() error { return g.run(xDev, wDev, yDev, be.stream) }
			err = runLt()
			if err == nil {
				err = d.check(d.cuStreamSynchronize(be.stream), "cublasLtMatmul")
			}
			theirs := make([]float32, m*s.n)
			if err == nil {
				err = d.check(d.cuMemcpyDtoH(unsafe.Pointer(&theirs[0]), yDev, uint64(4*len(theirs))), "download cuBLASLt y")
			}
			if err == nil {
				r.relDiff = golden.RelErr(ours, theirs)
				var names []string
				r.ours, err = measure(func() error {
					var err error
					names, err = be.launchStep(step, m)
					return err
				})
				r.kernel = strings.Join(names, "+")
			}
			if err == nil {
				r.lt, err = measure(runLt)
			}
			g.close()
			if err != nil {
				return nil, fmt.Errorf("%s %s M=%d: %w", mod.name, s.layer, m, err)
			}
			rows = append(rows, r)
		}
	}
	return rows, nil
}

// gemmStep finds the step writing plan output name and the plan index of
// the weight it reads (-1, -1 if none).
func gemmStep(p *ir.Plan, name string) (step, weight int) {
	for _, o := range p.Outputs {
		if o.Name != name {
			continue
		}
		for i, s := range p.Steps {
			if p.Root(s.Out) == p.Root(o.Buffer) && len(s.Args) == 2 && s.Args[1].Kind == ir.RefWeight {
				return i, s.Args[1].Index
			}
		}
	}
	return -1, -1
}

// launchStep enqueues the launches of plan step `step` that a step of t
// tokens of one sequence runs, as runLaunches would, and returns their
// kernels.
func (b *Backend) launchStep(step, t int) ([]string, error) {
	dyn := dynamic{t: int32(t), s: 1, splits: int32(b.splits)}
	var names []string
	for i := range b.launches {
		lr := &b.launches[i]
		if lr.l.Step != step || !lr.l.Runs(t, 1, t == 1) || len(lr.ptrs) == 0 {
			continue
		}
		g, ok := grid(&lr.l, int64(t), 1, 1, int64(b.splits))
		if !ok {
			continue
		}
		pack(&lr.l, lr.step, &b.a, dyn, lr.vals)
		if err := b.d.check(b.d.cuLaunchKernel(lr.fn, g[0], g[1], g[2], uint32(lr.l.Block), 1, 1, 0, b.stream, unsafe.Pointer(&lr.ptrs[0]), nil), "launch "+lr.l.Kernel); err != nil {
			return nil, err
		}
		names = append(names, lr.l.Kernel)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("step %d launches nothing at %d rows", step, t)
	}
	return names, nil
}

// randomBF16 returns n random bf16 values (little-endian) in ±[2⁻⁷, 1).
func randomBF16(n int64) []byte {
	b := make([]byte, 2*n)
	s := uint64(0x9e3779b97f4a7c15)
	for i := int64(0); i < n; i += 4 {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		for j := int64(0); j < 4 && i+j < n; j++ {
			r := uint16(s >> (16 * j))
			v := r&0x8000 | (120+(r>>7)%7)<<7 | r&0x7f // sign, exponent 120..126, mantissa
			b[2*(i+j)], b[2*(i+j)+1] = byte(v), byte(v>>8)
		}
	}
	return b
}

// gemmKernels generates a GEMM plan's module and returns its kernels
// section: compiled here with nvcc when there is one, else the images that
// make gpu-check-prep wrote to $PIO_GEMM_KERNELS (TestGemmBenchKernels).
func gemmKernels(t *testing.T, name string, p *ir.Plan) *engine.Kernels {
	t.Helper()
	m, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("PIO_GEMM_KERNELS"); dir != "" {
		if src, err := os.ReadFile(filepath.Join(dir, name+".cu")); err == nil {
			if string(src) != m.Source {
				t.Fatalf("the GEMM kernels in %s were generated by other code: rerun make gpu-check-prep", dir)
			}
			var imgs []abi.Image
			for _, arch := range cg.DefaultArchs {
				if data, err := os.ReadFile(filepath.Join(dir, name+"."+arch)); err == nil {
					imgs = append(imgs, abi.Image{Arch: arch, Data: data})
				}
			}
			return compiler.KernelsOf(m, imgs, "prebuilt "+dir)
		}
	}
	if _, err := cg.FindNVCC(); err != nil {
		t.Skipf("skipping: no GEMM kernels in $PIO_GEMM_KERNELS (make gpu-check-prep) and %v", err)
	}
	imgs, err := cg.Compile(context.Background(), m.Source, cg.CompileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return compiler.KernelsOf(m, imgs, "nvcc")
}

// TestGemmBenchKernels writes the GEMM benchmark's generated modules and
// their images to $PIO_GEMM_KERNELS_OUT, for a GPU machine without nvcc
// (make gpu-check-prep).
func TestGemmBenchKernels(t *testing.T) {
	dir := os.Getenv("PIO_GEMM_KERNELS_OUT")
	if dir == "" {
		t.Skip("skipping: set PIO_GEMM_KERNELS_OUT to write the GEMM benchmark's kernels")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mod := range gemmModels {
		p, err := gemmPlan(mod)
		if err != nil {
			t.Fatal(err)
		}
		m, err := cg.Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := cg.Compile(context.Background(), m.Source, cg.CompileOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range imgs {
			if err := os.WriteFile(filepath.Join(dir, mod.name+"."+im.Arch), im.Data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, mod.name+".cu"), []byte(m.Source), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGPUGemmBench prints one "GEMM" line per model, layer and M comparing
// our generated matmul with cuBLASLt (make gpu-check tabulates them), and
// fails if the two products differ by more than 1e-3 (bf16 inputs exact in
// both, f32 accumulation in different orders).
func TestGPUGemmBench(t *testing.T) {
	needGPU(t)
	lt, err := loadCublasLt()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	t.Logf("cuBLASLt: %s", lt.path)
	fmt.Printf("GEMM cuBLASLt %s; ours reads x as f32, cuBLASLt as bf16 (conversion not timed); L2 flushed before each run, median of 9 runs after 3\nGEMM \n", lt.path)
	fmt.Printf("GEMM %s\nGEMM %s\n", gemmHeader, strings.TrimSuffix(strings.Repeat("--- | ", strings.Count(gemmHeader, "|")+1), " | "))
	for _, mod := range gemmModels {
		p, err := gemmPlan(mod)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := gemmBench(lt, mod, p, gemmKernels(t, mod.name, p), gemmBenchOptions{
			ms: []int{1, 16, 64, 512}, warmup: 3, runs: 9, flush: 256 << 20, workspace: 32 << 20,
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			fmt.Printf("GEMM %s\n", r)
			if r.relDiff > 1e-3 {
				t.Errorf("%s %s M=%d: ours vs cuBLASLt relative difference %.3g", r.model, r.layer, r.m, r.relDiff)
			}
		}
	}
}

// TestEmulatedGemmBench runs the GEMM benchmark on the emulator with
// small shapes (K a multiple of 8 and not; M on both sides of the warp
// kernel's bound): our generated kernels, launched as the backend picks
// them, must agree with the emulated cuBLASLt within 1e-5 (f32 sums of
// exact bf16 products in another order), and every row must carry times.
func TestEmulatedGemmBench(t *testing.T) {
	gxx := useFakeDriver(t)
	lt := useFakeCublasLt(t, gxx)
	mod := gemmModel{"tiny", []gemmShape{{"a", 48, 32}, {"b", 20, 36}, {"c", 70, 16}}}
	p, err := gemmPlan(mod)
	if err != nil {
		t.Fatal(err)
	}
	ms := []int{1, cg.WarpMaxRows, cg.WarpMaxRows + 5}
	rows, err := gemmBench(lt, mod, p, emuKernels(t, gxx, p), gemmBenchOptions{ms: ms, warmup: 1, runs: 3, flush: 1 << 16, workspace: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(ms)*len(mod.shapes) {
		t.Fatalf("%d rows, want %d", len(rows), len(ms)*len(mod.shapes))
	}
	for _, r := range rows {
		t.Logf("GEMM %s", r)
		if r.relDiff > 1e-5 || !(r.ours > 0) || !(r.lt > 0) || r.kernel == "" {
			t.Errorf("row %s: want both times, a kernel and agreement within 1e-5", r)
		}
	}
}
