package cuda

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ebitengine/purego"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/cpu/kern"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// quantEngine builds the tiny golden model quantized (pioc build --quant)
// and returns the emulated CUDA backend and the CPU backend over it.
func quantEngine(t *testing.T, gxx, model, format string, group int) (*Backend, *cpu.Backend, *engine.Engine) {
	t.Helper()
	e, _ := emuEngine(t, gxx, model, compiler.Options{DType: ir.BF16, Quant: format, QuantGroup: group})
	nq := 0
	for _, s := range e.Meta.Plan.Steps {
		if s.Op == ir.OpMatMulQ {
			nq++
		}
	}
	if nq == 0 {
		t.Fatalf("%s %s: no matmul_q step in the plan", model, format)
	}
	opt := Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4}
	gpu, ref := engineBackends(t, e, opt)
	return gpu, ref, e
}

// TestEmulatedQuant: quantized engines of the tiny Qwen3 (int8, int4 with
// its int8 lm_head, fp8; group 32, and int4 with group 64, where the
// projections whose K is not a multiple of 64 stay bf16) give the CPU
// backend's logits on the same engine within 1e-4 (f32 compute both ways,
// summation order differs): a 22-token prompt (every matmul_q over 16 rows:
// the tiled kernel), a 7-token prompt and four single-token decode steps
// (the GEMV); greedy decoding with CUDA graphs gives the CPU's tokens. The
// prompt over 16 rows is the tight one (up to 9e-5 here; the bf16 engine's
// tiled matmuls give 5e-5 on it): the tiles sum each dot product in k
// order, the CPU in eight or sixteen lanes, and the 3-layer model amplifies
// the difference. The steps of at most 16 rows (the GEMV) agree to about
// 1e-6 (measured up to 9.8e-7) and are held to 1e-5.
func TestEmulatedQuant(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, c := range []struct {
		format string
		group  int
	}{{"int8", 32}, {"int4", 32}, {"fp8", 32}, {"int4", 64}} {
		t.Run(fmt.Sprintf("%s/g%d", c.format, c.group), func(t *testing.T) {
			gpu, ref, eng := quantEngine(t, gxx, "qwen3-a", c.format, c.group)
			long := []int32{5, 9, 2, 7, 7, 1, 3, 8, 8, 2, 4, 6, 1, 9, 9, 3, 2, 2, 5, 7, 300, 411}
			short := []int32{17, 250, 3, 3, 99, 480, 1}
			worst := 0.0
			for _, p := range [][]int32{long, short} {
				e := golden.RelErr(forward(t, gpu, p), forward(t, ref, p))
				if worst = max(worst, e); e > 1e-4 {
					t.Errorf("%d-token prompt: logits vs CPU backend: relative error %.3g", len(p), e)
				}
			}
			// Decode: the prompt, then one token at a time (the CPU's argmax).
			step := func(be runtime.Backend, toks []int32, start int) []float32 {
				bt := &runtime.Batch{Tokens: toks, Seqs: []runtime.SeqView{{Blocks: []int32{3, 1, 4, 0, 5, 9, 2, 6}}}}
				for i := range toks {
					bt.Positions = append(bt.Positions, int32(start+i))
					bt.SeqOfToken = append(bt.SeqOfToken, 0)
				}
				bt.LogitRows = []int32{int32(len(toks) - 1)}
				if err := be.Step(bt); err != nil {
					t.Fatal(err)
				}
				out, _, err := be.Output("logits")
				if err != nil {
					t.Fatal(err)
				}
				return slices.Clone(out)
			}
			toks, pos := short, 0
			for i := 0; i < 5; i++ {
				got, want := step(gpu, toks, pos), step(ref, toks, pos)
				e := golden.RelErr(got, want)
				if worst = max(worst, e); e > 1e-5 {
					t.Errorf("step %d (%d tokens): logits vs CPU backend: relative error %.3g", i, len(toks), e)
				}
				pos += len(toks)
				toks = []int32{int32(argmax(want))}
			}
			t.Logf("worst relative error vs the CPU backend: %.3g", worst)
			gpu2, err := FromEngine(eng, Options{MaxTokens: 64, NumBlocks: 64, BlockSize: 4, MaxSeqs: 4})
			if err != nil {
				t.Fatal(err)
			}
			defer gpu2.Close()
			var greedy [2][]int32
			for i, be := range []runtime.Backend{gpu2, ref} {
				gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
				if greedy[i], err = gen.Generate(context.Background(), long, modeltest.GenerateOptions{MaxTokens: 6}, nil); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(greedy[0], greedy[1]) || len(gpu2.graphs) != 1 {
				t.Errorf("greedy: emulated CUDA %v, CPU %v (%d decode graphs)", greedy[0], greedy[1], len(gpu2.graphs))
			}
		})
	}
}

// quantWeight fills a quantized weight's codes (every byte value, fp8's
// subnormal and NaN codes included) or scales (f32 in [0.01, 0.06)).
func quantWeight(r *rand.Rand, w ir.PlanTensor) []byte {
	n, _ := w.Shape.Elems(0, 0)
	data := make([]byte, n*int64(w.DType.Size()))
	if w.DType != ir.F32 {
		for i := range data {
			data[i] = byte(r.IntN(256))
		}
		return data
	}
	for i := int64(0); i < n; i++ {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(0.01+0.05*r.Float64())))
	}
	return data
}

// TestEmulatedQuantShapes runs matmul_q on shapes the tiny model does not
// have, against the CPU backend: N not a multiple of the 8 columns of a
// GEMV block nor of the 64 of a tile, several tiles each way; K = 96 (three
// code vectors per int8 row, fewer than the 32 lanes); groups of 64 and 128;
// K = 4160 in int8 (260 vectors: more than the 256 one pass of a warp's
// loads covers). Rows 1 (the GEMV with 4 rows per block row), 5 and 16 (16
// rows per block row, one pass over the codes) and 17, 70 (tiles, the last
// partial).
func TestEmulatedQuantShapes(t *testing.T) {
	gxx := useFakeDriver(t)
	shapes := []struct{ n, k, g int }{{37, 96, 32}, {130, 320, 64}, {9, 4160, 32}, {70, 256, 128}}
	for _, format := range ir.QuantFormats {
		t.Run(format, func(t *testing.T) {
			b := ir.NewBuilder("matmul_q")
			for i, s := range shapes {
				x := b.Input(fmt.Sprintf("x%d", i), ir.F32, ir.T, ir.Dim(s.k))
				cdt, csh, err := ir.QuantCodes(format, ir.Dim(s.n), ir.Dim(s.k))
				if err != nil {
					t.Fatal(err)
				}
				codes := b.Weight(fmt.Sprintf("w%d@%s", i, format), cdt, csh...)
				scales := b.Weight(fmt.Sprintf("w%d@scales", i), ir.F32, ir.Dim(s.n), ir.Dim(s.k/s.g))
				b.Output(fmt.Sprintf("y%d", i), b.Op(ir.OpMatMulQ, []*ir.Value{x, codes, scales}, ir.Str("format", format), ir.Int("group", int64(s.g))))
			}
			p := loweredPlan(t, b)
			r := rand.New(rand.NewPCG(3, uint64(len(format))))
			var ws []Weight
			var cws []cpu.Weight
			for _, w := range p.Weights {
				data := quantWeight(r, w)
				shape := make([]int64, len(w.Shape))
				for j, d := range w.Shape {
					shape[j] = int64(d)
				}
				ws = append(ws, Weight{DType: w.DType, Shape: shape, Data: data})
				cws = append(cws, cpu.Weight{DType: w.DType, Shape: shape, Data: data})
			}
			gpu, ref := planBackends(t, gxx, p, ws, cws, Options{MaxTokens: 80})
			names := outputNames(p)
			for _, T := range []int{1, 5, 16, 17, 70} {
				in := map[string]runtime.Input{}
				for i, s := range shapes {
					xs := make([]float32, T*s.k)
					for j := range xs {
						xs[j] = float32(r.NormFloat64())
					}
					in[fmt.Sprintf("x%d", i)] = runtime.Input{F32: xs}
				}
				outs := stepBoth(t, visionBatch(T, in), names, gpu, ref)
				for i, n := range names {
					if e := golden.RelErr(outs[0][i], outs[1][i]); e > 1e-5 || len(outs[0][i]) != T*shapes[i].n {
						t.Errorf("T=%d %s [%d, %d] group %d: emulated CUDA vs CPU relative error %.3g (%d values)",
							T, n, shapes[i].n, shapes[i].k, shapes[i].g, e, len(outs[0][i]))
					}
				}
			}
		})
	}
}

// TestEmulatedF8Decode: the generated fp8 decoder gives kern.F8's bits for
// every one of the 256 codes (subnormals, ±0 and the NaN codes included),
// and every non-NaN code its E4M3 value.
func TestEmulatedF8Decode(t *testing.T) {
	gxx := useFakeDriver(t) // the module resolves the emulator's symbols
	b := ir.NewBuilder("f8")
	x := b.Input("x", ir.F32, ir.T, 32)
	b.Output("y", b.Op(ir.OpMatMulQ, []*ir.Value{x, b.Weight("w@fp8", ir.F8E4M3, 1, 32), b.Weight("w@scales", ir.F32, 1, 1)},
		ir.Str("format", "fp8"), ir.Int("group", 32)))
	p := loweredPlan(t, b)
	m, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := m.Source + `
extern "C" void pio_test_f8(float* out) {
  for (unsigned b = 0; b < 256; b++) out[b] = pio_f8e4m3(b);
}
extern "C" void pio_test_dq_fp8(unsigned w, float* out) { pio_dq_fp8(w, out); }
`
	cc, so := filepath.Join(dir, "f8.cc"), filepath.Join(dir, "f8.so")
	if err := os.WriteFile(cc, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	emu, _ := filepath.Abs("testdata/emu")
	if out, err := exec.Command(gxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-Wno-unknown-pragmas", "-include", filepath.Join(emu, "emu.h"), "-o", so, cc).CombinedOutput(); err != nil {
		t.Fatalf("g++: %v\n%s", err, out)
	}
	lib, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
	if err != nil {
		t.Fatal(err)
	}
	var decode func(*float32)
	var decodeWord func(uint32, *float32)
	purego.RegisterLibFunc(&decode, lib, "pio_test_f8")
	purego.RegisterLibFunc(&decodeWord, lib, "pio_test_dq_fp8")
	var got [256]float32
	decode(&got[0])
	for c := range 256 {
		if want := kern.F8(byte(c)); math.Float32bits(got[c]) != math.Float32bits(want) {
			t.Errorf("code %#02x: decoded %g (%#08x), kern.F8 %g (%#08x)", c, got[c], math.Float32bits(got[c]), want, math.Float32bits(want))
		}
		// And the E4M3 definition, subnormals (e = 0) included; the NaN
		// codes are left to kern.F8's convention.
		e, m := (c>>3)&15, c&7
		if c&0x7f == 0x7f {
			continue
		}
		def := math.Ldexp(1+float64(m)/8, e-7)
		if e == 0 {
			def = math.Ldexp(float64(m)/8, -6)
		}
		if c&0x80 != 0 {
			def = -def
		}
		if float64(got[c]) != def || math.Signbit(float64(got[c])) != (c&0x80 != 0) {
			t.Errorf("code %#02x: decoded %g, E4M3 says %g", c, got[c], def)
		}
	}
	// The word decoder takes bytes in little-endian order.
	var four [4]float32
	decodeWord(0x01ff8038, &four[0])
	for i, c := range []byte{0x38, 0x80, 0xff, 0x01} {
		if math.Float32bits(four[i]) != math.Float32bits(kern.F8(c)) {
			t.Errorf("word byte %d (%#02x): %g, want %g", i, c, four[i], kern.F8(c))
		}
	}
}
