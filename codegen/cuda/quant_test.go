package cuda_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/runtime/engine"
)

// quantPlans are the tiny Qwen3's plans built with pioc's driver in every
// quantization format (group 32; int4 also with group 64, which keeps the
// projections whose K is not a multiple of 64 in bf16), and a Qwen3-4B
// layer's projections and lm_head at their real widths in every format.
func quantPlans(t *testing.T) map[string]*ir.Plan {
	t.Helper()
	ps := map[string]*ir.Plan{}
	for _, c := range []struct {
		format string
		group  int
	}{{"int8", 32}, {"int4", 32}, {"fp8", 32}, {"int4", 64}} {
		path := filepath.Join(t.TempDir(), "q.pio")
		if _, err := compiler.Build(compiler.Options{Source: "../../testdata/tiny/qwen3-a", Output: path, DType: ir.BF16, Quant: c.format, QuantGroup: c.group}); err != nil {
			t.Fatal(err)
		}
		e, err := engine.Open(path, engine.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ps[fmt.Sprintf("qwen3-a/%s/g%d", c.format, c.group)] = e.Meta.Plan
		e.Close()
	}
	for _, f := range ir.QuantFormats {
		ps["qwen3-4b-layer/"+f] = quantLayerPlan(t, f, 32)
	}
	return ps
}

// quantLayerPlan is y = x·Wᵀ for every distinct weight shape of Qwen3-4B
// (hidden 2560, 32 query and 8 KV heads of 128, intermediate 9728, vocab
// 151936), quantized in format f.
func quantLayerPlan(t *testing.T, f string, group int) *ir.Plan {
	t.Helper()
	const hidden, inter = 2560, 9728
	b := ir.NewBuilder("qwen3-4b-" + f)
	x := b.Input("x", ir.F32, ir.T, hidden)
	xi := b.Input("xi", ir.F32, ir.T, inter)
	for _, w := range []struct {
		name string
		n    ir.Dim
		in   *ir.Value
	}{{"q", 4096, x}, {"kv", 1024, x}, {"o", hidden, b.Input("xo", ir.F32, ir.T, 4096)}, {"gate_up", inter, x}, {"down", hidden, xi}, {"lm_head", 151936, x}} {
		k := w.in.Shape.Last()
		cdt, csh, err := ir.QuantCodes(f, w.n, k)
		if err != nil {
			t.Fatal(err)
		}
		codes := b.Weight(w.name+"@"+f, cdt, csh...)
		scales := b.Weight(w.name+"@scales", ir.F32, w.n, k/ir.Dim(group))
		b.Output(w.name, b.Op(ir.OpMatMulQ, []*ir.Value{w.in, codes, scales}, ir.Str("format", f), ir.Int("group", int64(group))))
	}
	return cuda.LoweredPlan(t, b)
}

// TestGenerateQuantPlans: every step of the quantized plans has a launch,
// and every matmul_q step exactly its three kernels: the GEMV with 4 rows
// per block row up to 4 rows, with 16 (one pass over the codes) up to
// WarpMaxRows, the tiled kernel above.
func TestGenerateQuantPlans(t *testing.T) {
	for name, p := range quantPlans(t) {
		m, err := cuda.Generate(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		launches := make([][]abi.Launch, len(p.Steps))
		for _, l := range m.Launches {
			launches[l.Step] = append(launches[l.Step], l)
		}
		nq := 0
		for i, s := range p.Steps {
			ls := launches[i]
			if len(ls) == 0 {
				t.Errorf("%s: step %d (%v) has no launch", name, i, s.Op)
			}
			if s.Op != ir.OpMatMulQ {
				continue
			}
			nq++
			if len(ls) != 3 || !strings.HasPrefix(ls[0].Kernel, "matmul_q_warp_") || ls[0].MaxRows != 4 || ls[0].MinRows != 0 || ls[0].Grid[1].Div != 4 ||
				!strings.HasPrefix(ls[1].Kernel, "matmul_q_warp_") || ls[1].MinRows != 5 || ls[1].MaxRows != cuda.WarpMaxRows || ls[1].Grid[1].Div != 16 ||
				!strings.HasPrefix(ls[2].Kernel, "matmul_q_tile_") || ls[2].MinRows != cuda.WarpMaxRows+1 || ls[2].MaxRows != 0 {
				t.Errorf("%s: step %d: launches %+v", name, i, ls)
			}
		}
		if nq == 0 {
			t.Errorf("%s: no matmul_q step", name)
		}
	}
}

// TestGenerateQuantRejects: matmul_q steps the kernels cannot take fail
// with the step named.
func TestGenerateQuantRejects(t *testing.T) {
	b := ir.NewBuilder("bad")
	x := b.Input("x", ir.F32, ir.T, 64)
	codes := b.Input("codes", ir.I8, 8, 64) // not a weight: alignment unknown
	b.Output("y", b.Op(ir.OpMatMulQ, []*ir.Value{x, codes, b.Weight("s", ir.F32, 8, 2)}, ir.Str("format", "int8"), ir.Int("group", 32)))
	p := cuda.LoweredPlan(t, b)
	if _, err := cuda.Generate(p); err == nil || !strings.Contains(err.Error(), "step 0 (matmul_q): codes and scales must be weights") {
		t.Errorf("codes from an input: got %v", err)
	}
	p = quantLayerPlan(t, "int8", 32)
	p.Steps[0].Attrs = append(ir.Attrs(nil), p.Steps[0].Attrs...)
	for i, a := range p.Steps[0].Attrs {
		if a.Key == "group" {
			p.Steps[0].Attrs[i] = ir.Int("group", 64)
		}
	}
	if _, err := cuda.Generate(p); err == nil || !strings.Contains(err.Error(), "scales f32[4096, 80]: want f32[4096, 40]") {
		t.Errorf("group that does not match the scales: got %v", err)
	}
}

// TestCompileQuantModels compiles every kernel of the quantized plans for
// every target arch with the real nvcc (warnings as errors), and checks
// with ptxas's report (sm_90a) that none of them spills registers. It
// skips where nvcc is absent.
func TestCompileQuantModels(t *testing.T) {
	nvcc := cuda.NVCCOrSkip(t)
	src := cuda.NewKernelSource()
	for _, p := range quantPlans(t) {
		m, err := cuda.Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		src.Add(m, func(k string) bool { return strings.HasPrefix(k, "matmul_q_") }, func(b string) bool { return strings.Contains(b, "matmul_q") })
	}
	names := src.Names
	cuda.CompileEveryArch(t, nvcc, src.String(), names)
	out := cuda.PtxasReport(t, nvcc, src.String(), "sm_90a")
	spill := regexp.MustCompile(`(\d+) bytes spill stores, (\d+) bytes spill loads`)
	reports := spill.FindAllStringSubmatch(out, -1)
	if len(reports) < len(names) {
		t.Fatalf("ptxas reported on %d functions, want %d:\n%s", len(reports), len(names), out)
	}
	for _, r := range reports {
		if r[1] != "0" || r[2] != "0" {
			t.Errorf("a kernel spills registers:\n%s", out)
			break
		}
	}
	t.Logf("%d matmul_q kernels compiled for %v, none spilling", len(names), cuda.DefaultArchs)
}
