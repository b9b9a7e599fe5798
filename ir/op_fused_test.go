package ir

// inferenceCase is one row of TestInference's table.
type inferenceCase = struct {
	name    string
	build   func(e *opEnv) *Value
	want    string
	wantErr string
}

// extraInferenceCases are the fused ops' rows of TestInference, so that the
// table of another family's file needs no edit.
var extraInferenceCases = []inferenceCase{
	{"fused_matmul", func(e *opEnv) *Value { return e.b.Op(OpFusedMatMul, vals(e.x, e.w)) }, "f32[T, 128]", ""},
	{"fused_matmul/all", func(e *opEnv) *Value {
		r := e.in("r", F32, T, 64)
		return e.b.Op(OpFusedMatMul, vals(e.x, e.w, e.norm, r), Int("norm", 1), Float("eps", 1e-6),
			Str("act", "swiglu"), Int("residual", 1), Ints("sections", 64, 64))
	}, "f32[T, 64]", ""},
	{"fused_matmul/sections", func(e *opEnv) *Value {
		return e.b.Op(OpFusedMatMul, vals(e.xs, e.w), Ints("sections", 64, 32, 32))
	}, "f32[S, 128]", ""},
	{"fused_matmul/bad sections", func(e *opEnv) *Value {
		return e.b.Op(OpFusedMatMul, vals(e.x, e.w), Ints("sections", 64, 32))
	}, "", "do not sum"},
	{"fused_matmul/missing norm", func(e *opEnv) *Value {
		return e.b.Op(OpFusedMatMul, vals(e.x, e.w), Int("norm", 1), Float("eps", 1e-6))
	}, "", "want 3 args"},
	{"fused_matmul/residual shape", func(e *opEnv) *Value {
		return e.b.Op(OpFusedMatMul, vals(e.x, e.w, e.x), Int("residual", 1))
	}, "", "does not match"},
	{"fused_matmul/act", func(e *opEnv) *Value { return e.b.Op(OpFusedMatMul, vals(e.x, e.w), Str("act", "gelu")) }, "", "act must be"},
	{"section", func(e *opEnv) *Value { return e.b.Op(OpSection, vals(e.q), Int("start", 4), Int("size", 8)) }, "f32[T, 4, 8]", ""},
	{"section/range", func(e *opEnv) *Value { return e.b.Op(OpSection, vals(e.x), Int("start", 60), Int("size", 8)) }, "", "outside"},
	{"add_rms_norm", func(e *opEnv) *Value {
		return e.b.Op(OpAddRMSNorm, vals(e.x, e.x, e.norm), Float("eps", 1e-6))
	}, "f32[T, 64]", ""},
	{"add_rms_norm/shapes", func(e *opEnv) *Value {
		return e.b.Op(OpAddRMSNorm, vals(e.x, e.xs, e.norm), Float("eps", 1e-6))
	}, "", "shapes differ"},
	{"qkv_attention", func(e *opEnv) *Value {
		qkv := e.in("qkv", F32, T, 4*16+2*16+2*8)
		qn, kn := e.wt("qn", 16), e.wt("kn", 16)
		return e.b.Op(OpQKVAttention, vals(qkv, e.pos, qn, kn), Ints("heads", 4, 2), Int("head_dim", 16), Int("v_head_dim", 8),
			Float("eps", 1e-6), Float("theta", 1e6), Int("rotary_dims", 16), Str("style", "neox"), Int("cache", int64(e.cache)), Float("scale", 0.25))
	}, "f32[T, 4, 8]", ""},
	{"qkv_attention/gate", func(e *opEnv) *Value {
		qkv := e.in("qkv", F32, T, 4*32+2*16+2*16)
		return e.b.Op(OpQKVAttention, vals(qkv, e.pos), Ints("heads", 4, 2), Int("head_dim", 16), Int("gate", 1),
			Float("theta", 1e6), Int("rotary_dims", 8), Str("style", "neox"), Int("cache", 0), Float("scale", 0.25))
	}, "f32[T, 4, 16]", ""},
	{"qkv_attention/width", func(e *opEnv) *Value {
		return e.b.Op(OpQKVAttention, vals(e.x, e.pos), Ints("heads", 4, 2), Int("head_dim", 16),
			Float("theta", 1e6), Int("rotary_dims", 16), Str("style", "neox"), Int("cache", 0), Float("scale", 0.25))
	}, "", "qkv must be float [T, 128]"},
	{"moe_routed", func(e *opEnv) *Value {
		gu, down := e.wt("gu", 8*2*16, 64), e.wt("down", 8*64, 16)
		return e.b.Op(OpMoERouted, vals(e.x, e.wt("router", 8, 64), gu, down, e.wt("bias", 8), e.norm, e.x),
			Int("k", 2), Str("scoring", "sigmoid"), Int("normalize", 1), Float("scale", 1.8), Int("experts", 8),
			Int("bias", 1), Int("norm", 1), Float("eps", 1e-6), Int("residual", 1))
	}, "f32[T, 64]", ""},
	{"moe_routed/args", func(e *opEnv) *Value {
		gu, down := e.wt("gu", 8*2*16, 64), e.wt("down", 8*64, 16)
		return e.b.Op(OpMoERouted, vals(e.x, e.wt("router", 8, 64), gu, down, e.wt("bias", 8)), Int("k", 2), Str("scoring", "sigmoid"), Int("experts", 8))
	}, "", "want 4 args"},
	{"moe_routed/k", func(e *opEnv) *Value {
		gu, down := e.wt("gu", 8*2*16, 64), e.wt("down", 8*64, 16)
		return e.b.Op(OpMoERouted, vals(e.x, e.wt("router", 8, 64), gu, down), Int("k", 9), Str("scoring", "softmax"), Int("experts", 8))
	}, "", "k 9 must be in [1, 8]"},
	{"qkv_attention/gqa", func(e *opEnv) *Value {
		qkv := e.in("qkv", F32, T, 3*16+2*2*16)
		return e.b.Op(OpQKVAttention, vals(qkv, e.pos), Ints("heads", 3, 2), Int("head_dim", 16),
			Float("theta", 1e6), Int("rotary_dims", 16), Str("style", "neox"), Int("cache", 0), Float("scale", 0.25))
	}, "", "multiple of Hkv"},
}
