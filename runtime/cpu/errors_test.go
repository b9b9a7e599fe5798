package cpu

import (
	"strings"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// TestBadBatch feeds malformed batches: each must be an error naming the
// problem, never a panic, and must leave the caches as they were.
func TestBadBatch(t *testing.T) {
	l := newLayer()
	p := l.plan(t, ir.F32)
	opt := Options{MaxTokens: 16, BlockSize: 4, NumBlocks: 8, MaxSeqs: 3, Threads: 2}
	be := newBackend(t, p, l.ws.weights(p), opt)
	tokens := randTokens(l.ws.rng, 7, l.V)
	blocks := []int32{4, 1}
	step(t, be, makeBatch(chunk{blocks, 0, tokens[:6]}))

	good := func() *runtime.Batch {
		return makeBatch(chunk{blocks, 0, []int32{1, 2, 3}}, chunk{[]int32{0}, 0, []int32{4}})
	}
	cases := []struct {
		name string
		edit func(b *runtime.Batch)
		want string
	}{
		{"nil", nil, "nil batch"},
		{"empty", func(b *runtime.Batch) { *b = runtime.Batch{Seqs: b.Seqs} }, "empty batch"},
		{"too many tokens", func(b *runtime.Batch) {
			*b = *makeBatch(chunk{[]int32{0, 1, 2, 3, 5}, 0, make([]int32, 17)})
		}, "exceeds MaxTokens 16"},
		{"token id too large", func(b *runtime.Batch) { b.Tokens[2] = int32(l.V) }, "outside the vocabulary"},
		{"negative token id", func(b *runtime.Batch) { b.Tokens[0] = -1 }, "outside the vocabulary"},
		{"block index too large", func(b *runtime.Batch) { b.Seqs[1].Blocks = []int32{8} }, "outside the pool of 8"},
		{"negative block index", func(b *runtime.Batch) { b.Seqs[0].Blocks = []int32{-1, 1} }, "outside the pool"},
		{"table too short", func(b *runtime.Batch) {
			b.Seqs[1].Blocks = []int32{0}
			b.Positions[3] = 4
		}, "has 1 blocks, position 4 needs 2"},
		{"position beyond the pool", func(b *runtime.Batch) {
			b.Seqs[1].Blocks = make([]int32, 9)
			b.Positions[3] = 32
		}, "beyond the cache's 32 positions"},
		{"negative position", func(b *runtime.Batch) { b.Positions[3] = -1 }, "negative position"},
		{"short positions", func(b *runtime.Batch) { b.Positions = b.Positions[:3] }, "3 positions"},
		{"short SeqOfToken", func(b *runtime.Batch) { b.SeqOfToken = b.SeqOfToken[:1] }, "1 sequence indices"},
		{"sequence out of range", func(b *runtime.Batch) { b.SeqOfToken[3] = 2 }, "sequence 2, outside"},
		{"negative sequence", func(b *runtime.Batch) { b.SeqOfToken[0] = -1 }, "sequence -1, outside"},
		{"not contiguous", func(b *runtime.Batch) {
			b.SeqOfToken = []int32{0, 1, 0, 1}
			b.Positions = []int32{0, 0, 1, 1}
		}, "not contiguous"},
		{"position gap", func(b *runtime.Batch) { b.Positions[2] = 3 }, "jumps from position 1 to 3"},
		{"no sequences", func(b *runtime.Batch) { b.Seqs = nil }, "0 sequences"},
		{"more sequences than tokens", func(b *runtime.Batch) {
			b.Seqs = append(b.Seqs, b.Seqs...)
			b.Seqs = append(b.Seqs, b.Seqs...)
		}, "8 sequences, want 1 to 4"},
		{"more than MaxSeqs", func(b *runtime.Batch) {
			*b = *makeBatch(chunk{[]int32{0}, 0, []int32{1}}, chunk{[]int32{2}, 0, []int32{1}}, chunk{[]int32{3}, 0, []int32{1}}, chunk{[]int32{5}, 0, []int32{1}})
		}, "more than MaxSeqs 3"},
		{"more logit rows than tokens", func(b *runtime.Batch) { b.LogitRows = []int32{0, 1, 2, 3, 0} }, "5 logit rows, more than its 4 tokens"},
		{"logit row out of range", func(b *runtime.Batch) { b.LogitRows[1] = 4 }, "outside the batch of 4 tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bt *runtime.Batch
			if tc.edit != nil {
				bt = good()
				tc.edit(bt)
			}
			err := be.Step(bt)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Step: err = %v, want one containing %q", err, tc.want)
			}
			if _, _, err := be.Output("hidden"); err == nil {
				t.Errorf("Output after a failed Step succeeded")
			}
		})
	}

	// The cache still holds the prefill: decoding position 6 matches the reference.
	step(t, be, makeBatch(chunk{blocks, 6, tokens[6:]}))
	got, _ := output(t, be, "hidden")
	if e := maxRel(got, l.reference(tokens)[6]); !tolerance.Within(t, e, tol) {
		t.Errorf("decode after bad batches: max relative error %.3g > %g", e, tol)
	}
}

func TestNewErrors(t *testing.T) {
	l := newLayer()
	p := l.plan(t, ir.F32)
	w := func() []Weight { return l.ws.weights(p) }

	ws := newWeightSet(1)
	b := ir.NewBuilder("bad-input")
	b.Output("out", b.Embedding(ws.add(b, "emb", ir.F32, 1, 4, 4), b.Input("ids", ir.I32, ir.S)))
	badInput := finish(t, b)

	b = ir.NewBuilder("bad-cache")
	tok := b.Input("tokens", ir.I32, ir.T)
	x := b.Reshape(b.Embedding(ws.add(b, "emb", ir.F32, 1, 4, 4), tok), ir.T, 2, 2)
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, DType: ir.F32, Entries: []ir.Shape{ir.Sh(2, 3), ir.Sh(2, 2)}})
	b.Output("out", b.Attention(x, x, x, c, 1))
	badCache := finish(t, b)

	unknownOp := &ir.Plan{
		Inputs:    []ir.PlanTensor{{Name: "tokens", DType: ir.I32, Shape: ir.Sh(ir.T)}},
		Buffers:   []ir.Buffer{{DType: ir.I32, Shape: ir.Sh(ir.T), View: -1}},
		Steps:     []ir.Step{{Op: ir.Op(999), Args: []ir.Ref{{Kind: ir.RefInput}}, Out: 0}},
		Outputs:   []ir.PlanOutput{{Name: "out", Buffer: 0}},
		ArenaPerT: 64,
	}

	cases := []struct {
		name string
		plan *ir.Plan
		w    func() []Weight
		opt  Options
		want string
	}{
		{"unknown op", unknownOp, func() []Weight { return nil }, Options{}, "op op(999) not supported"},
		{"unknown input", badInput, func() []Weight { return ws.weights(badInput) }, Options{}, `input "ids": shape [S], want [T, ...]`},
		{"missing weight", p, func() []Weight { return w()[1:] }, Options{}, "weights, got"},
		{"wrong dtype", p, func() []Weight { ww := w(); ww[0].DType = ir.BF16; return ww }, Options{}, `weight "emb": dtype bf16, plan wants f32`},
		{"wrong shape", p, func() []Weight { ww := w(); ww[0].Shape = []int64{24, 29}; return ww }, Options{}, `weight "emb": shape`},
		{"short data", p, func() []Weight { ww := w(); ww[1].Data = ww[1].Data[:8]; return ww }, Options{}, `weight "ln": 8 bytes`},
		{"cache mismatch", badCache, func() []Weight { return ws.weights(badCache) }, Options{}, "does not hold k"},
		{"negative option", p, w, Options{Threads: -1}, "negative option"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			be, err := New(tc.plan, tc.w(), tc.opt)
			if err == nil {
				be.Close()
				t.Fatalf("New succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestOutputAndClose(t *testing.T) {
	l := newLayer()
	p := l.plan(t, ir.F32)
	be, err := New(p, l.ws.weights(p), Options{BlockSize: 4, NumBlocks: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := be.Output("hidden"); err == nil {
		t.Errorf("Output before any Step succeeded")
	}
	bt := makeBatch(chunk{[]int32{0}, 0, []int32{1, 2}})
	step(t, be, bt)
	if _, _, err := be.Output("nope"); err == nil {
		t.Errorf("Output of an unknown name succeeded")
	}
	if _, shape, err := be.Output("last"); err != nil || len(shape) != 2 || shape[0] != 1 || shape[1] != l.H {
		t.Errorf("Output(last) = %v, %v; want shape [1 %d]", shape, err, l.H)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := be.Step(bt); err == nil {
		t.Errorf("Step after Close succeeded")
	}
}

func TestDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxTokens != runtime.DefaultMaxStepTokens || o.BlockSize != runtime.DefaultBlockSize ||
		o.NumBlocks != runtime.DefaultCacheTokens/runtime.DefaultBlockSize || o.MaxSeqs != runtime.DefaultMaxSeqs || o.Threads < 1 {
		t.Errorf("defaults %+v, want runtime's", o)
	}
	if o, _ := (Options{BlockSize: 5}).withDefaults(); o.NumBlocks != (runtime.DefaultCacheTokens+4)/5 {
		t.Errorf("NumBlocks for BlockSize 5 = %d, want ⌈%d/5⌉", o.NumBlocks, runtime.DefaultCacheTokens)
	}
}

// TestStateSlots checks the state caches (allocated though no op uses them
// yet) and the slot checks they bring.
func TestStateSlots(t *testing.T) {
	ws := newWeightSet(2)
	b := ir.NewBuilder("state")
	b.Cache(ir.CacheSpec{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(2, 3, 4), ir.Sh(5, 3)}})
	b.Output("out", b.Embedding(ws.add(b, "emb", ir.F32, 1, 4, 4), b.Input("tokens", ir.I32, ir.T)))
	p := finish(t, b)
	p.Caches = []ir.CacheSpec{{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(2, 3, 4), ir.Sh(5, 3)}}} // lowering drops caches no step uses
	be := newBackend(t, p, ws.weights(p), Options{MaxSeqs: 3})
	if got := []int{len(be.caches[0].entries[0]), len(be.caches[0].entries[1])}; got[0] != 3*24 || got[1] != 3*15 {
		t.Errorf("state entries hold %v floats, want [72 45]", got)
	}
	bt := makeBatch(chunk{nil, 0, []int32{1}}, chunk{nil, 0, []int32{2}})
	step(t, be, bt) // no paged cache: block tables are not needed
	bt.Seqs[1].Slot = 0
	if err := be.Step(bt); err == nil || !strings.Contains(err.Error(), "slot 0 used twice") {
		t.Errorf("duplicate slot: err = %v", err)
	}
	bt.Seqs[1].Slot = 3
	if err := be.Step(bt); err == nil || !strings.Contains(err.Error(), "slot 3 outside 0..2") {
		t.Errorf("slot out of range: err = %v", err)
	}
}
