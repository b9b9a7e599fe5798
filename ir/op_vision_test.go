package ir

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	patches := func(e *opEnv) *Value { return e.in("pq", F32, T, 4, 2, 8) } // [T, G, H, D]
	seg := func(e *opEnv) *Value { return e.in("seg", I32, T) }
	vis := MRoPEOpts{Theta: 10000, FreqDim: 4, Sections: []int64{2, 2}, Layout: "chunked"}
	txt := MRoPEOpts{Theta: 5e6, FreqDim: 16, Sections: []int64{4, 2, 2}, Layout: "interleaved"}
	familyInferenceCases = append(familyInferenceCases,
		c{"layer_norm", func(e *opEnv) *Value { return e.b.LayerNorm(e.x, e.norm, e.wt("nb", 64), 1e-6) }, "f32[T, 64]", ""},
		c{"layer_norm/bias shape", func(e *opEnv) *Value { return e.b.LayerNorm(e.x, e.norm, e.wt("nb", 32), 1e-6) }, "", "weight and bias must be float [64]"},
		c{"layer_norm/eps", func(e *opEnv) *Value { return e.b.LayerNorm(e.x, e.norm, e.norm, 0) }, "", "eps must be > 0"},
		c{"gelu", func(e *opEnv) *Value { return e.b.GELU(e.x, "tanh") }, "f32[T, 64]", ""},
		c{"gelu/erf", func(e *opEnv) *Value { return e.b.GELU(e.q, "erf") }, "f32[T, 4, 16]", ""},
		c{"gelu/approximate", func(e *opEnv) *Value { return e.b.GELU(e.x, "none") }, "", "approximate must be"},
		c{"segment_attention", func(e *opEnv) *Value {
			p := patches(e)
			return e.b.SegmentAttention(p, p, p, seg(e), 0.125)
		}, "f32[T, 4, 2, 8]", ""},
		c{"segment_attention/3-D", func(e *opEnv) *Value { return e.b.SegmentAttention(e.q, e.q, e.q, seg(e), 0.25) }, "f32[T, 4, 16]", ""},
		c{"segment_attention/shapes", func(e *opEnv) *Value { return e.b.SegmentAttention(e.q, e.k, e.k, seg(e), 0.25) }, "", "must have one shape"},
		c{"segment_attention/seg", func(e *opEnv) *Value { return e.b.SegmentAttention(e.q, e.q, e.q, e.x, 0.25) }, "", "segments must be i32[T]"},
		c{"segment_attention/scale", func(e *opEnv) *Value { return e.b.SegmentAttention(e.q, e.q, e.q, seg(e), 0) }, "", "scale must be > 0"},
		c{"mrope/2-D", func(e *opEnv) *Value { return e.b.MRoPE(patches(e), e.in("vpos", I32, T, 4, 2), vis) }, "f32[T, 4, 2, 8]", ""},
		c{"mrope/interleaved", func(e *opEnv) *Value { return e.b.MRoPE(e.q, e.in("tpos", I32, T, 3), txt) }, "f32[T, 4, 16]", ""},
		c{"mrope/pos shape", func(e *opEnv) *Value { return e.b.MRoPE(e.q, e.in("tpos", I32, T, 2), txt) }, "", "positions must be i32[T, 3]"},
		c{"mrope/too wide", func(e *opEnv) *Value {
			o := txt
			o.Sections = []int64{8, 4, 4}
			return e.b.MRoPE(e.q, e.in("tpos", I32, T, 3), o)
		}, "", "do not fit head dim 16"},
		c{"mrope/interleaved axes", func(e *opEnv) *Value {
			o := txt
			o.Sections = []int64{1, 1, 4}
			return e.b.MRoPE(e.q, e.in("tpos", I32, T, 3), o)
		}, "", "run past slot 6"},
		c{"mrope/layout", func(e *opEnv) *Value {
			o := vis
			o.Layout = "zigzag"
			return e.b.MRoPE(patches(e), e.in("vpos", I32, T, 4, 2), o)
		}, "", "layout must be"},
		c{"mrope/freq_dim", func(e *opEnv) *Value {
			o := vis
			o.FreqDim = 3
			return e.b.MRoPE(patches(e), e.in("vpos", I32, T, 4, 2), o)
		}, "", "freq_dim 3 must be even"},
		c{"weighted_rows", func(e *opEnv) *Value {
			return e.b.WeightedRows(e.embed, e.in("pidx", I32, T, 4, 4), e.in("pw", F32, T, 4, 4))
		}, "f32[T, 4, 64]", ""},
		c{"weighted_rows/weights", func(e *opEnv) *Value {
			return e.b.WeightedRows(e.embed, e.in("pidx", I32, T, 4, 4), e.in("pw", F32, T, 4))
		}, "", "weights must be float [T, 4, 4]"},
		c{"add_rows", func(e *opEnv) *Value { return e.b.AddRows(e.x, e.in("f", F32, T, 64), e.tokens) }, "f32[T, 64]", ""},
		c{"add_rows/features", func(e *opEnv) *Value { return e.b.AddRows(e.x, e.in("f", F32, T, 32), e.tokens) }, "", "features must be float [T, 64]"},
		c{"set_rows", func(e *opEnv) *Value { return e.b.SetRows(e.x, e.in("f", F32, T, 64), e.tokens) }, "f32[T, 64]", ""},
		c{"set_rows/mask", func(e *opEnv) *Value { return e.b.SetRows(e.x, e.in("f", F32, T, 64), e.x) }, "", "mask must be i32[T]"},
		c{"bias_add", func(e *opEnv) *Value { return e.b.BiasAdd(e.q, e.wt("b16", 16)) }, "f32[T, 4, 16]", ""},
		c{"bias_add/shape", func(e *opEnv) *Value { return e.b.BiasAdd(e.x, e.wt("b16", 16)) }, "", "bias must be float [64]"},
	)
}
