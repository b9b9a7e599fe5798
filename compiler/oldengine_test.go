package compiler_test

import (
	"path/filepath"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

// testdata/engines/old-slice.pio was built before op 67 (slice) was retired
// for section (testdata/engines/README.md). It still loads, its slice steps
// read as sections, and it computes what an engine built now from the same
// checkpoint computes.
func TestOldSliceEngine(t *testing.T) {
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(filepath.Dir(root), "engines")
	open := func(path string) (*engine.Engine, *cpu.Backend) {
		e, err := engine.Open(path, engine.OpenOptions{VerifyWeights: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		be, err := cpu.FromEngine(e, cpu.Options{MaxTokens: 8, BlockSize: 4, NumBlocks: 16, MaxSeqs: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Close() })
		return e, be
	}
	oldE, old := open(filepath.Join(dir, "old-slice.pio"))
	// As `pioc build --check` built the old one.
	path := filepath.Join(t.TempDir(), "fresh.pio")
	if _, err := compiler.Build(compiler.Options{Source: filepath.Join(dir, "glm4moelite-1layer"), Output: path, DType: ir.BF16, Check: true}); err != nil {
		t.Fatal(err)
	}
	freshE, fresh := open(path)
	count := func(p *ir.Plan) map[ir.Op]int {
		n := map[ir.Op]int{}
		for _, s := range p.Steps {
			n[s.Op]++
		}
		return n
	}
	if o, f := count(oldE.Meta.Plan), count(freshE.Meta.Plan); o[ir.OpSection] != f[ir.OpSection] || o[ir.OpSection] == 0 {
		t.Errorf("sections: %d in the old engine, %d in the fresh one", o[ir.OpSection], f[ir.OpSection])
	}

	ids := []int32{1, 2, 3, 4, 5, 6, 7}
	forward(t, old, ids)
	forward(t, fresh, ids)
	got, _, err1 := old.Output("logits")
	want, _, err2 := fresh.Output("logits")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if len(got) != len(want) || len(got) != len(ids)*256 {
		t.Fatalf("%d logits, want %d", len(got), len(want))
	}
	// Today the two plans are the same steps, so the logits are the same
	// bits; the bound leaves room for later changes to how models build.
	e := golden.RelErr(got, want)
	if !tolerance.Within(t, e, 1e-5) {
		t.Errorf("old engine vs fresh: relative error %.3g", e)
	}
	t.Logf("old engine vs fresh: relative error %.3g", e)
}
