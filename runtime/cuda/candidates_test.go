package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	goruntime "runtime"
	"slices"
	"testing"
	"unsafe"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/sample"
	"github.com/inference-pio/pio/runtime/scheduler"
)

// refCandidates is runtime.Candidater's contract for one row, in Go.
func refCandidates(row []float32, off float32, limit int) runtime.Candidates {
	m := float32(math.Inf(-1))
	for _, v := range row {
		if v != v {
			return runtime.Candidates{Max: v, Full: true}
		}
		m = max(m, v)
	}
	c := runtime.Candidates{Max: m}
	if math.IsInf(float64(m), 0) {
		c.Full = true
		return c
	}
	for i, v := range row {
		if v-m >= -off {
			c.IDs = append(c.IDs, int32(i))
			c.Vals = append(c.Vals, v)
		}
	}
	if len(c.IDs) > limit {
		return runtime.Candidates{Max: m, Full: true}
	}
	return c
}

// sameCandidates reports how got differs from want ("" if not at all):
// values compared as bits, the maximum as bits unless the row is Full for
// a NaN.
func sameCandidates(got, want runtime.Candidates) string {
	bits := func(v []float32) []uint32 {
		out := make([]uint32, len(v))
		for i, x := range v {
			out[i] = math.Float32bits(x)
		}
		return out
	}
	switch {
	case got.Full != want.Full:
		return fmt.Sprintf("full %v, want %v", got.Full, want.Full)
	case want.Max != want.Max && got.Max == got.Max:
		return fmt.Sprintf("max %v, want NaN", got.Max)
	case want.Max == want.Max && math.Float32bits(got.Max) != math.Float32bits(want.Max):
		return fmt.Sprintf("max %v, want %v", got.Max, want.Max)
	case !slices.Equal(got.IDs, want.IDs) || !slices.Equal(bits(got.Vals), bits(want.Vals)):
		return fmt.Sprintf("%d candidates %v, want %d %v", len(got.IDs), head(got.IDs), len(want.IDs), head(want.IDs))
	}
	return ""
}

func head(ids []int32) []int32 { return ids[:min(len(ids), 12)] }

// stepRows runs one step of s one-token sequences (s logits rows).
func stepRows(t *testing.T, be runtime.Backend, s int) {
	t.Helper()
	var b runtime.Batch
	for j := range s {
		b.Tokens = append(b.Tokens, int32(3*j+1))
		b.Positions = append(b.Positions, 0)
		b.SeqOfToken = append(b.SeqOfToken, int32(j))
		b.Seqs = append(b.Seqs, runtime.SeqView{Blocks: []int32{int32(j)}, Slot: int32(j)})
		b.LogitRows = append(b.LogitRows, int32(j))
	}
	if err := be.Step(&b); err != nil {
		t.Fatal(err)
	}
}

// setLogits overwrites the device's logits of the last step with rows.
func setLogits(t *testing.T, b *Backend, rows []float32) {
	t.Helper()
	i := b.outputs["logits"]
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := b.d.check(b.d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		t.Fatal(err)
	}
	if err := b.d.check(b.d.cuMemcpyHtoD(b.a.buffers[i], unsafe.Pointer(&rows[0]), uint64(4*len(rows))), "upload logits"); err != nil {
		t.Fatal(err)
	}
	b.hostValid[i] = false
}

// checkCandidates runs the candidates kernel of b on its logits of a step
// of three rows, then on synthetic rows written in their place — equal
// values, NaN (first or elsewhere), -Inf, +Inf, ties, lists exactly at and
// one past the limit, candidates on the kernel's tile boundaries — and
// compares each row with refCandidates.
func checkCandidates(t *testing.T, b *Backend) {
	t.Helper()
	if b.cand.fn == 0 {
		t.Fatal("the engine has no candidates kernel")
	}
	const s = 3
	stepRows(t, b, s)
	logits, shape, err := b.Output("logits")
	if err != nil {
		t.Fatal(err)
	}
	v := shape[1]
	model := slices.Clone(logits)
	check := func(name string, rows []float32, offs []float32, limit int) {
		t.Helper()
		got, vocab, err := b.Candidates(offs, limit)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if vocab != v || len(got) != s {
			t.Fatalf("%s: %d rows of %d, want %d of %d", name, len(got), vocab, s, v)
		}
		for r := range s {
			if d := sameCandidates(got[r], refCandidates(rows[r*v:(r+1)*v], offs[r], limit)); d != "" {
				t.Errorf("%s: row %d (offset %v, limit %d): %s", name, r, offs[r], limit, d)
			}
		}
	}
	inf := float32(math.Inf(1))
	check("model logits", model, []float32{0, 0.5, 3}, v)
	check("model logits, all", model, []float32{inf, 1e30, 40}, v)
	check("model logits, small limit", model, []float32{1, 2, 0}, 3)

	r := rand.New(rand.NewPCG(11, 12))
	fill := func(f func(i int) float32) []float32 {
		row := make([]float32, v)
		for i := range row {
			row[i] = f(i)
		}
		return row
	}
	gauss := func(int) float32 { return float32(r.NormFloat64() * 3) }
	nan := float32(math.NaN())
	withAt := func(row []float32, at []int, x float32) []float32 {
		for _, i := range at {
			if i < len(row) {
				row[i] = x
			}
		}
		return row
	}
	// k tokens at 0 over a floor of -100, on the tile boundaries and the last token.
	spots := []int{0, 7, 8, 2047, 2048, 2049, 4095, 4096, v - 1}
	k := 0
	for _, i := range spots {
		if i < v {
			k++
		}
	}
	rounds := []struct {
		name  string
		rows  [s][]float32
		offs  [s]float32
		limit int
	}{
		{"equal values", [s][]float32{fill(func(int) float32 { return 1.5 }), fill(func(int) float32 { return -2 }), fill(func(int) float32 { return 0 })}, [s]float32{0, 1, 0}, v},
		{"equal values past the limit", [s][]float32{fill(func(int) float32 { return 1.5 }), fill(gauss), fill(func(int) float32 { return 0 })}, [s]float32{0, 0.1, 0}, v - 1},
		{"NaN", [s][]float32{withAt(fill(gauss), []int{v / 2}, nan), fill(gauss), withAt(fill(gauss), []int{0}, nan)}, [s]float32{30, 5, 30}, v},
		{"infinities", [s][]float32{fill(func(int) float32 { return -inf }), withAt(fill(gauss), []int{v - 1}, inf),
			withAt(fill(gauss), []int{1, 5, v / 3}, -inf)}, [s]float32{30, 30, 4}, v},
		{"-Inf within an infinite offset", [s][]float32{withAt(fill(gauss), []int{2, v - 2}, -inf), fill(gauss), withAt(fill(gauss), []int{0}, -inf)}, [s]float32{inf, 0, inf}, v},
		{"ties", [s][]float32{fill(func(int) float32 { return float32(r.IntN(6)) * 0.5 }), fill(func(int) float32 { return float32(r.IntN(3)) }), fill(gauss)}, [s]float32{0, 1, 2}, v},
		{"tile boundaries at the limit", [s][]float32{withAt(fill(func(int) float32 { return -100 }), spots, 0), fill(gauss), withAt(fill(func(int) float32 { return -100 }), spots, 0)}, [s]float32{1, 0, 100}, k},
		{"one past the limit", [s][]float32{withAt(fill(func(int) float32 { return -100 }), spots, 0), fill(gauss), withAt(fill(func(int) float32 { return -100 }), spots, 0)}, [s]float32{1, 0, 1}, k - 1},
	}
	for _, rd := range rounds {
		rows := slices.Concat(rd.rows[:]...)
		setLogits(t, b, rows)
		check(rd.name, rows, rd.offs[:], rd.limit)
	}
	// Bad calls are errors.
	if _, _, err := b.Candidates([]float32{1, 2}, v); err == nil {
		t.Error("two offsets for three rows: no error")
	}
	if _, _, err := b.Candidates([]float32{1, nan, 2}, v); err == nil {
		t.Error("a NaN offset: no error")
	}
	if _, _, err := b.Candidates([]float32{1, 1, 2}, 0); err == nil {
		t.Error("limit 0: no error")
	}
}

// countingBackend counts how the scheduler fetched each step's results
// from a CUDA backend.
type countingBackend struct {
	*Backend
	outputs, cands, argmaxes int
}

func (c *countingBackend) Output(name string) ([]float32, []int, error) {
	c.outputs++
	return c.Backend.Output(name)
}

func (c *countingBackend) Candidates(offs []float32, limit int) ([]runtime.Candidates, int, error) {
	c.cands++
	return c.Backend.Candidates(offs, limit)
}

func (c *countingBackend) Argmax() ([]int32, error) {
	c.argmaxes++
	return c.Backend.Argmax()
}

// serveSampled serves the golden prompts with seeded sampling options
// (temperature with top-p, min-p, top-k, and a greedy request among them)
// through the scheduler on the CUDA backend, drawing from the device's
// candidates, and on the CPU backend, drawing from full logits, and checks
// the tokens are the same and no logits were downloaded on the CUDA side —
// unless maxCand (scheduler.Config.MaxCandidates; 0: its default) is so
// small that rows fall back to them.
func serveSampled(t *testing.T, gpu *Backend, ref runtime.Backend, g *golden.Model, blocks, bs, maxSeqs, maxCand int) {
	t.Helper()
	opts := []sample.Options{
		{Temperature: 0.8, TopP: 0.9, Seed: 1},
		{Temperature: 1.2, MinP: 0.02, Seed: 2},
		{Temperature: 0.7, TopK: 20, Seed: 3},
		{},
		{Temperature: 1, Seed: 4},
	}
	var reqs []scheduler.Request
	for i, o := range opts {
		reqs = append(reqs, scheduler.Request{Prompt: g.Prompts[i%len(g.Prompts)].IDs, MaxTokens: 8, Sample: o})
	}
	cfg := scheduler.Config{MaxStepTokens: 64, MaxSeqs: maxSeqs, MaxCandidates: maxCand}
	c := &countingBackend{Backend: gpu}
	got, want := serveAll(t, c, blocks, bs, cfg, reqs), serveAll(t, ref, blocks, bs, cfg, reqs)
	for i := range got {
		if len(got[i]) != 8 || !slices.Equal(got[i], want[i]) {
			t.Errorf("request %d (%+v): CUDA %v, CPU %v", i, opts[i], got[i], want[i])
		}
	}
	drew := 0
	for i, o := range opts {
		p := g.Prompts[i%len(g.Prompts)]
		if o.Temperature > 0 && !slices.Equal(want[i], p.Greedy[:min(8, len(p.Greedy))]) {
			drew++
		}
	}
	if drew < 2 {
		t.Errorf("only %d sampling requests left the greedy continuation: the check samples too little", drew)
	}
	if fallback := maxCand > 0 && maxCand < 64; c.cands == 0 || (c.outputs != 0) != fallback {
		t.Errorf("CUDA backend, at most %d candidates: %d candidate lists, %d logits downloads", maxCand, c.cands, c.outputs)
	}
}
