package ir

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	core := func(e *opEnv, z, w *Value, eps float64) *Value {
		qk := func(name string) *Value { return e.in(name, F32, T, 2, 8) }
		gb := func(name string) *Value { return e.in(name, F32, T, 4) }
		return e.b.Op(OpDeltaNetCore, vals(qk("dq"), qk("dk"), e.in("dv", F32, T, 4, 12), gb("g"), gb("beta"), z, w),
			Int("cache", 0), Float("scale", 0.35), Int("l2norm", 1), Float("eps", eps))
	}
	familyInferenceCases = append(familyInferenceCases,
		c{"deltanet_core", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 12), e.wt("nw", 12), 1e-6) }, "f32[T, 4, 12]", ""},
		c{"deltanet_core/z shape", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 8), e.wt("nw", 12), 1e-6) }, "", "z must be float"},
		c{"deltanet_core/norm weight", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 12), e.wt("nw", 8), 1e-6) }, "", "norm weight must be"},
		c{"deltanet_core/eps", func(e *opEnv) *Value { return core(e, e.in("z", F32, T, 4, 12), e.wt("nw", 12), 0) }, "", "eps must be > 0"},
	)
}
