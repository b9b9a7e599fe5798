package ir

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	qk := func(e *opEnv, name string) *Value { return e.in(name, F32, T, 2, 8) }
	vv := func(e *opEnv) *Value { return e.in("dv", F32, T, 4, 12) }
	gb := func(e *opEnv, name string) *Value { return e.in(name, F32, T, 4) }
	rule := func(e *opEnv, q, k, v, g, beta *Value, o DeltaRuleOpts) *Value {
		return e.b.GatedDeltaRule(q, k, v, g, beta, 0, o)
	}
	familyInferenceCases = append(familyInferenceCases,
		c{"conv1d_causal", func(e *opEnv) *Value { return e.b.Conv1DCausal(e.x, e.wt("cw", 64, 1, 4), 0, true) }, "f32[T, 64]", ""},
		c{"conv1d_causal/2-D weight", func(e *opEnv) *Value { return e.b.Conv1DCausal(e.x, e.wt("cw", 64, 4), 0, false) }, "f32[T, 64]", ""},
		c{"conv1d_causal/channels", func(e *opEnv) *Value { return e.b.Conv1DCausal(e.x, e.wt("cw", 32, 1, 4), 0, true) }, "", "weight must be float [64, K]"},
		c{"conv1d_causal/kernel 1", func(e *opEnv) *Value { return e.b.Conv1DCausal(e.x, e.wt("cw", 64, 1, 1), 0, true) }, "", "2 <= K"},
		c{"conv1d_causal/activation", func(e *opEnv) *Value {
			return e.b.Op(OpConv1DCausal, vals(e.x, e.wt("cw", 64, 4)), Int("cache", 0), Str("activation", "gelu"))
		}, "", "activation must be"},
		c{"conv1d_causal/3-D x", func(e *opEnv) *Value { return e.b.Conv1DCausal(e.q, e.wt("cw", 64, 4), 0, true) }, "", "x must be float [T, channels]"},
		c{"gated_delta_rule", func(e *opEnv) *Value {
			return rule(e, qk(e, "dq"), qk(e, "dk"), vv(e), gb(e, "g"), gb(e, "beta"), DeltaRuleOpts{Scale: 0.35, L2Norm: true})
		}, "f32[T, 4, 12]", ""},
		c{"gated_delta_rule/heads", func(e *opEnv) *Value {
			return rule(e, e.in("q3", F32, T, 3, 8), e.in("k3", F32, T, 3, 8), vv(e), gb(e, "g"), gb(e, "beta"), DeltaRuleOpts{Scale: 1})
		}, "", "multiple of key heads"},
		c{"gated_delta_rule/q k differ", func(e *opEnv) *Value {
			return rule(e, qk(e, "dq"), e.in("k9", F32, T, 2, 9), vv(e), gb(e, "g"), gb(e, "beta"), DeltaRuleOpts{Scale: 1})
		}, "", "differ"},
		c{"gated_delta_rule/g shape", func(e *opEnv) *Value {
			return rule(e, qk(e, "dq"), qk(e, "dk"), vv(e), e.in("g2", F32, T, 2), gb(e, "beta"), DeltaRuleOpts{Scale: 1})
		}, "", "g and beta must be float [T, 4]"},
		c{"gated_delta_rule/scale", func(e *opEnv) *Value {
			return rule(e, qk(e, "dq"), qk(e, "dk"), vv(e), gb(e, "g"), gb(e, "beta"), DeltaRuleOpts{})
		}, "", "scale must be > 0"},
		c{"gated_delta_rule/chunk", func(e *opEnv) *Value {
			return rule(e, qk(e, "dq"), qk(e, "dk"), vv(e), gb(e, "g"), gb(e, "beta"), DeltaRuleOpts{Scale: 1, Chunk: -2})
		}, "", "chunk -2 must be"},
		c{"deltanet_decay", func(e *opEnv) *Value { return e.b.DeltaNetDecay(gb(e, "a"), e.wt("A_log", 4), e.wt("dt_bias", 4)) }, "f32[T, 4]", ""},
		c{"deltanet_decay/shape", func(e *opEnv) *Value { return e.b.DeltaNetDecay(gb(e, "a"), e.wt("A_log", 4), e.wt("dt_bias", 3)) }, "", "A_log and dt_bias must be float [4]"},
		c{"mul_rows", func(e *opEnv) *Value { return e.b.MulRows(e.x, e.in("s", F32, T, 1)) }, "f32[T, 64]", ""},
		c{"mul_rows/3-D", func(e *opEnv) *Value { return e.b.MulRows(e.q, e.in("s", F32, T, 1)) }, "f32[T, 4, 16]", ""},
		c{"mul_rows/scale shape", func(e *opEnv) *Value { return e.b.MulRows(e.x, e.in("s", F32, T, 2)) }, "", "s must be float [T, 1]"},
	)
}
