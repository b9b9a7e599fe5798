package ir

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	core := func(e *opEnv, z, w *Value, eps float64, extra ...Attr) *Value {
		qk := func(name string) *Value { return e.in(name, F32, T, 2, 8) }
		gb := func(name string) *Value { return e.in(name, F32, T, 4) }
		return e.b.Op(OpDeltaNetCore, vals(qk("dq"), qk("dk"), e.in("dv", F32, T, 4, 12), gb("g"), gb("beta"), z, w),
			append([]Attr{Int("cache", 0), Float("scale", 0.35), Int("l2norm", 1), Float("eps", eps)}, extra...)...)
	}
	familyInferenceCases = append(familyInferenceCases,
		c{"deltanet_core", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 12), e.wt("nw", 12), 1e-6) }, "f32[T, 4, 12]", ""},
		c{"deltanet_core/z shape", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 8), e.wt("nw", 12), 1e-6) }, "", "z must be float"},
		c{"deltanet_core/norm weight", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 12), e.wt("nw", 8), 1e-6) }, "", "norm weight must be"},
		c{"deltanet_core/zrow", func(e *opEnv) *Value { return core(e, e.in("row", F32, T, 136), e.wt("nw", 12), 1e-6, Int("zrow", 0)) }, "f32[T, 4, 12]", ""},
		c{"deltanet_core/zrow short", func(e *opEnv) *Value { return core(e, e.in("row", F32, T, 136), e.wt("nw", 12), 1e-6, Int("zrow", 16)) }, "", "z row must be"},
		c{"deltanet_core/z without zrow", func(e *opEnv) *Value { return core(e, e.in("row", F32, T, 136), e.wt("nw", 12), 1e-6) }, "", "z must be float"},
		c{"deltanet_core/eps", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 12), e.wt("nw", 12), 0) }, "", "eps must be > 0"},
	)
}

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	// Hk 2, Hv 4, dk 8, dv 12: qkvz 2·(16+48) = 128 wide, ba 8, C = 80.
	prep := func(e *opEnv, width int, cw *Value, ba int64) *Value {
		return e.b.Op(OpDeltaNetPrep, vals(e.in("proj", F32, T, Dim(width)), cw, e.wt("A_log", 4), e.wt("dt_bias", 4)),
			Int("cache", 0), Ints("heads", 2, 4), Ints("dims", 8, 12), Int("qkvz", 0), Int("ba", ba))
	}
	familyInferenceCases = append(familyInferenceCases,
		c{"deltanet_prep", func(e *opEnv) *Value { return prep(e, 136, e.wt("cw", 80, 1, 4), 128) }, "f32[T, 88]", ""},
		c{"deltanet_prep/row", func(e *opEnv) *Value { return prep(e, 130, e.wt("cw", 80, 1, 4), 128) }, "", "outside the row"},
		c{"deltanet_prep/conv", func(e *opEnv) *Value { return prep(e, 136, e.wt("cw", 64, 1, 4), 128) }, "", "weight must be float [80, K]"},
	)
}
