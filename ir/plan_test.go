package ir

import (
	"strings"
	"testing"
)

// validPlan is a hand-lowered attention block: embedding, norm, q and k
// projections viewed as heads, rope, attention, then the last row of each
// sequence. Every f32 buffer holds 64 floats (256 bytes) or fewer per token.
//
//	b0 [T, 64] x      @ 0        b5 [T, 2, 16]  view b4
//	b1 [T, 64] h      @ 256      b6 [T, 4, 16]  q roped @ 896
//	b2 [T, 64] q      @ 512      b7 [T, 4, 16]  attn    @ 1152
//	b3 [T, 4, 16]     view b2    b8 [T, 64]     view b7
//	b4 [T, 32] k      @ 768      b9 [S, 64]     last    @ 1408
func validPlan() *Plan {
	buf := func(dt DType, sh Shape, perT int64) Buffer {
		return Buffer{DType: dt, Shape: sh, OffsetPerT: perT, View: -1}
	}
	view := func(sh Shape, of int) Buffer { return Buffer{DType: F32, Shape: sh, View: of} }
	in := func(i int) Ref { return Ref{RefInput, i} }
	w := func(i int) Ref { return Ref{RefWeight, i} }
	b := func(i int) Ref { return Ref{RefBuffer, i} }
	must := func(a ...Attr) Attrs {
		at, err := MakeAttrs(a...)
		if err != nil {
			panic(err)
		}
		return at
	}
	p := &Plan{
		Inputs: []PlanTensor{{Name: "tokens", DType: I32, Shape: Sh(T)}, {Name: "positions", DType: I32, Shape: Sh(T)}, {Name: "logit_rows", DType: I32, Shape: Sh(S)}},
		Weights: []PlanTensor{
			{Name: "embed", DType: BF16, Shape: Sh(512, 64)}, {Name: "norm", DType: BF16, Shape: Sh(64)}, {Name: "q", DType: BF16, Shape: Sh(64, 64)}, {Name: "k", DType: BF16, Shape: Sh(32, 64)},
		},
		Caches: []CacheSpec{{Kind: CacheKV, DType: F32, Entries: []Shape{Sh(2, 16), Sh(2, 16)}}},
		Buffers: []Buffer{
			buf(F32, Sh(T, 64), 0), buf(F32, Sh(T, 64), 256), buf(F32, Sh(T, 64), 512), view(Sh(T, 4, 16), 2),
			buf(F32, Sh(T, 32), 768), view(Sh(T, 2, 16), 4), buf(F32, Sh(T, 4, 16), 896),
			buf(F32, Sh(T, 4, 16), 1152), view(Sh(T, 64), 7), buf(F32, Sh(S, 64), 1408),
		},
		Steps: []Step{
			{Op: OpEmbedding, Args: []Ref{w(0), in(0)}, Out: 0},
			{Op: OpRMSNorm, Args: []Ref{b(0), w(1)}, Out: 1, Attrs: must(Float("eps", 1e-6))},
			{Op: OpMatMul, Args: []Ref{b(1), w(2)}, Out: 2},
			{Op: OpMatMul, Args: []Ref{b(1), w(3)}, Out: 4},
			{Op: OpRoPE, Args: []Ref{b(3), in(1)}, Out: 6, Attrs: must(Float("theta", 1e6), Int("rotary_dims", 16), Str("style", "neox"))},
			{Op: OpAttention, Args: []Ref{b(6), b(5), b(5)}, Out: 7, Attrs: must(Int("cache", 0), Float("scale", 0.25))},
			{Op: OpGatherRows, Args: []Ref{b(8), in(2)}, Out: 9},
		},
		Outputs:   []PlanOutput{{"last_hidden", 9}},
		ArenaPerT: 1664,
	}
	for i, bf := range p.Buffers {
		if bf.View >= 0 { // a view shares its buffer's bytes
			p.Buffers[i].OffsetPerT = p.Buffers[bf.View].OffsetPerT
		}
	}
	if err := p.Validate(); err != nil {
		panic(err)
	}
	return p
}

func TestPlanValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Plan)
		want   string
	}{
		{"weight ref out of range", func(p *Plan) { p.Steps[2].Args[1] = Ref{RefWeight, 9} }, "step 2 (matmul): operand w9 out of range"},
		{"input ref out of range", func(p *Plan) { p.Steps[0].Args[1] = Ref{RefInput, -1} }, "step 0 (embedding): operand in-1 out of range"},
		{"buffer ref out of range", func(p *Plan) { p.Steps[1].Args[0] = Ref{RefBuffer, 10} }, "step 1 (rms_norm): operand b10 out of range"},
		{"ref kind", func(p *Plan) { p.Steps[1].Args[0] = Ref{Kind: 9} }, "operand ref(9,0) out of range"},
		{"read before write", func(p *Plan) { p.Steps[0], p.Steps[1] = p.Steps[1], p.Steps[0] }, "step 0 (rms_norm): reads b0 before it is written"},
		{"view read before its buffer is written", func(p *Plan) {
			p.Steps = append(p.Steps[:2], p.Steps[4], p.Steps[2], p.Steps[3], p.Steps[5], p.Steps[6])
		}, "step 2 (rope): reads b3 before it is written"},
		{"misaligned buffer", func(p *Plan) { p.Buffers[1].OffsetPerT = 260 }, "buffer 1: outside the arena or misaligned"},
		{"misaligned fixed offset", func(p *Plan) { p.Buffers[1].OffsetFixed = 8; p.ArenaFixed = 64 }, "buffer 1: outside the arena or misaligned"},
		{"buffer past the arena", func(p *Plan) { p.ArenaPerT = 1600 }, "buffer 9: outside the arena or misaligned"},
		{"negative offset", func(p *Plan) { p.Buffers[0].OffsetPerT = -64 }, "buffer 0: outside the arena or misaligned"},
		{"offset past the arena", func(p *Plan) { p.Buffers[0].OffsetFixed = 1 << 62 }, "buffer 0: outside the arena or misaligned"},
		{"size overflows", func(p *Plan) {
			// 2^61 i64 elements per token is 2^64 bytes, 0 in int64 arithmetic.
			p.Buffers = append(p.Buffers, Buffer{DType: I64, Shape: Sh(T, 1<<61), View: -1})
		}, "buffer 10: outside the arena or misaligned"},
		{"bad buffer type", func(p *Plan) { p.Buffers[0].DType = 0 }, "buffer 0: bad type"},
		{"bad buffer shape", func(p *Plan) { p.Buffers[0].Shape = Sh(T, S) }, "buffer 0: bad type"},
		{"view of a later buffer", func(p *Plan) { p.Buffers[3].View = 4 }, "buffer 3: view of later buffer 4"},
		{"view of itself", func(p *Plan) { p.Buffers[3].View = 3 }, "buffer 3: view of later buffer 3"},
		{"bad view", func(p *Plan) { p.Buffers[3].View = -2 }, "buffer 3: bad view -2"},
		{"view size", func(p *Plan) { p.Buffers[5].Shape = Sh(T, 2, 8) }, "buffer 5: view does not match buffer 4"},
		{"view dtype", func(p *Plan) { p.Buffers[5].DType = I32 }, "buffer 5: view does not match buffer 4"},
		{"view of T rows as S rows", func(p *Plan) { p.Buffers[8].Shape = Sh(S, 64) }, "buffer 8: view does not match buffer 7"},
		{"step output type", func(p *Plan) { p.Buffers[9].Shape = Sh(S, 32) }, "step 6: v2 gather_rows: recorded type f32[S, 32], inferred f32[S, 64]"},
		{"step output dtype", func(p *Plan) { p.Buffers[6].DType = BF16 }, "step 4: v2 rope: recorded type bf16[T, 4, 16], inferred f32[T, 4, 16]"},
		{"step operand types", func(p *Plan) { p.Steps[2].Args[1] = Ref{RefWeight, 3} }, "step 2: v2 matmul: recorded type f32[T, 64], inferred f32[T, 32]"},
		{"step arity", func(p *Plan) { p.Steps[2].Args = p.Steps[2].Args[:1] }, "step 2: v1 matmul: want 2 args, got 1"},
		{"step missing attribute", func(p *Plan) { p.Steps[1].Attrs = nil }, `step 1: v2 rms_norm: missing attribute "eps"`},
		{"step unsorted attributes", func(p *Plan) {
			a := p.Steps[4].Attrs
			a[0], a[1] = a[1], a[0]
		}, `step 4: v2 rope: attributes not sorted`},
		{"undeclared cache", func(p *Plan) { p.Caches = nil }, "step 5 (attention): cache 0 not declared"},
		{"bad cache", func(p *Plan) { p.Caches[0].DType = I32 }, "cache 0: dtype i32 is not float"},
		{"step writes a view", func(p *Plan) { p.Steps[2].Out = 3 }, "step 2 (matmul): bad output buffer 3"},
		{"step output out of range", func(p *Plan) { p.Steps[2].Out = 10 }, "step 2 (matmul): bad output buffer 10"},
		{"reshape step", func(p *Plan) { p.Steps[2].Op = OpReshape }, "step 2: op reshape cannot be a step"},
		{"unknown op step", func(p *Plan) { p.Steps[2].Op = 999 }, "step 2: op op(999) cannot be a step"},
		{"input type", func(p *Plan) { p.Inputs[0].DType = 99 }, `tensor 0 "tokens": bad type`},
		{"weight name", func(p *Plan) { p.Weights[1].Name = "" }, `tensor 4 "": bad type`},
		{"unwritten output", func(p *Plan) { p.Steps = p.Steps[:6] }, `output "last_hidden": bad or unwritten buffer 9`},
		{"output out of range", func(p *Plan) { p.Outputs[0].Buffer = -1 }, `output "last_hidden": bad or unwritten buffer -1`},
		{"duplicate output", func(p *Plan) { p.Outputs = append(p.Outputs, PlanOutput{"last_hidden", 8}) }, `output "last_hidden": empty or duplicate name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := validPlan()
			tt.mutate(p)
			err := p.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the plan, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %q, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestPlanBytesAndRoot(t *testing.T) {
	p := validPlan()
	if got := p.Buffers[9].Bytes(10); got != 10*64*4 {
		t.Errorf("Bytes(10) = %d, want %d", got, 10*64*4)
	}
	for i, want := range map[int]int{3: 2, 5: 4, 8: 7, 7: 7, -1: -1, 42: 42} {
		if got := p.Root(i); got != want {
			t.Errorf("Root(%d) = %d, want %d", i, got, want)
		}
	}
	// A cycle of views cannot hang Root.
	p.Buffers[2].View = 3
	p.Root(3)
}

func TestPrintPlan(t *testing.T) {
	golden(t, "plan.txt", PrintPlan(validPlan()))
}
