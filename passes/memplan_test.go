package passes_test

import (
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	_ "github.com/inference-pio/pio/models/all"
	"github.com/inference-pio/pio/passes"
)

// qwen3Plan lowers Qwen3-0.6B's real shape (no weights needed).
func qwen3Plan(t *testing.T, opt passes.Options, taps bool) *ir.Plan {
	t.Helper()
	cfg, err := hf.ParseConfig([]byte(`{"architectures":["Qwen3ForCausalLM"],"hidden_size":1024,"intermediate_size":3072,
		"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,"vocab_size":151936,
		"rope_theta":1000000,"rms_norm_eps":1e-6,"tie_word_embeddings":true}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(models.BuildOptions{WeightDType: ir.BF16, Taps: taps})
	if err != nil {
		t.Fatal(err)
	}
	opt.Check = true
	if err := passes.Run(g, opt); err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// checkNoOverlap recomputes liveness independently of the planner and checks
// that buffers live at the same step never share a byte, for several max T.
func checkNoOverlap(t *testing.T, p *ir.Plan) {
	t.Helper()
	n := len(p.Buffers)
	def, last := make([]int, n), make([]int, n)
	for i := range def {
		def[i], last[i] = -1, -1
	}
	for si, s := range p.Steps {
		for _, a := range s.Args {
			if a.Kind == ir.RefBuffer {
				r := p.Root(a.Index)
				last[r] = max(last[r], si)
			}
		}
		if def[s.Out] < 0 {
			def[s.Out] = si
		}
		last[s.Out] = max(last[s.Out], si)
	}
	for _, o := range p.Outputs {
		last[p.Root(o.Buffer)] = len(p.Steps)
	}
	var roots []int
	for i, b := range p.Buffers {
		if b.View < 0 && def[i] >= 0 {
			roots = append(roots, i)
		}
	}
	for _, maxT := range []int64{1, 3, 64, 512} {
		size := p.ArenaPerT*maxT + p.ArenaFixed
		for ai, a := range roots {
			ba := p.Buffers[a]
			oa := ba.OffsetPerT*maxT + ba.OffsetFixed
			ea := oa + ba.Bytes(maxT)
			if ea > size {
				t.Fatalf("maxT %d: buffer %d ends at %d, past the arena's %d", maxT, a, ea, size)
			}
			for _, b := range roots[ai+1:] {
				if def[a] > last[b] || def[b] > last[a] {
					continue // never live together
				}
				bb := p.Buffers[b]
				ob := bb.OffsetPerT*maxT + bb.OffsetFixed
				eb := ob + bb.Bytes(maxT)
				if oa < eb && ob < ea && ba.Bytes(maxT) > 0 && bb.Bytes(maxT) > 0 {
					t.Fatalf("maxT %d: buffers %d [%d,%d) steps %d..%d and %d [%d,%d) steps %d..%d overlap",
						maxT, a, oa, ea, def[a], last[a], b, ob, eb, def[b], last[b])
				}
			}
		}
	}
}

// The planned arena never lets two live buffers overlap, for any max T,
// keeps outputs to the end, and is much smaller than the sum of all
// intermediates (reported with -v).
func TestMemoryPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  passes.Options
		taps bool
	}{
		{"fused", passes.Options{}, false},
		{"unfused", passes.Options{NoFuse: true}, false},
		{"fused+taps", passes.Options{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := qwen3Plan(t, tc.opt, tc.taps)
			checkNoOverlap(t, p)
			perT, fixed := passes.Intermediates(p)
			const maxT = 512
			planned, sum := p.ArenaPerT*maxT+p.ArenaFixed, perT*maxT+fixed
			if planned >= sum {
				t.Errorf("planned arena %d B is not smaller than the intermediates' %d B", planned, sum)
			}
			t.Logf("Qwen3-0.6B shape, %s: %d steps; arena %d B/token (%.1f MiB at T=%d) vs %d B/token unplanned: ratio %.4f",
				tc.name, len(p.Steps), p.ArenaPerT, float64(planned)/(1<<20), maxT, perT, float64(planned)/float64(sum))
		})
	}
}
