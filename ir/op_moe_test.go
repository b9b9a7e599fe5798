package ir

import (
	"strings"
	"testing"
)

func init() {
	type c = struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}
	logits := func(e *opEnv) *Value { return e.in("logits", F32, T, 8) }
	ids := func(e *opEnv) *Value {
		return e.b.Op(OpRouterTopK, vals(logits(e)), Int("k", 2), Str("scoring", "softmax"))
	}
	moe := func(e *opEnv, gu, down *Value) *Value {
		l := logits(e)
		i, w := e.b.Router(l, nil, RouterOpts{K: 2, Scoring: "softmax", Normalize: true})
		return e.b.MoE(e.x, i, w, gu, down, 8)
	}
	familyInferenceCases = append(familyInferenceCases,
		// router_topk
		c{"router_topk", ids, "i32[T, 2]", ""},
		c{"router_topk/bias", func(e *opEnv) *Value {
			return e.b.Op(OpRouterTopK, vals(logits(e), e.b.Weight("bias", F32, 8)), Int("k", 8), Str("scoring", "sigmoid"))
		}, "i32[T, 8]", ""},
		c{"router_topk/k too large", func(e *opEnv) *Value {
			return e.b.Op(OpRouterTopK, vals(logits(e)), Int("k", 9), Str("scoring", "softmax"))
		}, "", "k 9 must be in [1, 8]"},
		c{"router_topk/scoring", func(e *opEnv) *Value {
			return e.b.Op(OpRouterTopK, vals(logits(e)), Int("k", 2), Str("scoring", "relu"))
		}, "", "scoring must be"},
		c{"router_topk/bias shape", func(e *opEnv) *Value {
			return e.b.Op(OpRouterTopK, vals(logits(e), e.b.Weight("bias", F32, 4)), Int("k", 2), Str("scoring", "sigmoid"))
		}, "", "bias must be float [8]"},
		c{"router_topk/3 args", func(e *opEnv) *Value {
			l := logits(e)
			return e.b.Op(OpRouterTopK, vals(l, l, l), Int("k", 2), Str("scoring", "sigmoid"))
		}, "", "optional bias"},
		c{"router_topk/3-D logits", func(e *opEnv) *Value {
			return e.b.Op(OpRouterTopK, vals(e.q), Int("k", 2), Str("scoring", "sigmoid"))
		}, "", "logits must be float [T, experts]"},

		// router_weights
		c{"router_weights", func(e *opEnv) *Value {
			_, w := e.b.Router(logits(e), nil, RouterOpts{K: 2, Scoring: "sigmoid", Normalize: true, Scale: 1.8})
			return w
		}, "f32[T, 2]", ""},
		c{"router_weights/float ids", func(e *opEnv) *Value {
			return e.b.Op(OpRouterWeights, vals(logits(e), e.in("f", F32, T, 2)), Str("scoring", "sigmoid"))
		}, "", "ids must be i32[T, k]"},
		c{"router_weights/scale", func(e *opEnv) *Value {
			l := logits(e)
			return e.b.Op(OpRouterWeights, vals(l, ids(e)), Str("scoring", "sigmoid"), Float("scale", -1))
		}, "", "scale must be > 0"},
		c{"router_weights/normalize", func(e *opEnv) *Value {
			l := logits(e)
			return e.b.Op(OpRouterWeights, vals(l, ids(e)), Str("scoring", "sigmoid"), Int("normalize", 2))
		}, "", "normalize must be 0 or 1"},

		// moe
		c{"moe/stacked 2-D", func(e *opEnv) *Value { return moe(e, e.wt("gu", 8*2*16, 64), e.wt("d", 8*64, 16)) }, "f32[T, 64]", ""},
		c{"moe/fused 3-D", func(e *opEnv) *Value { return moe(e, e.wt("gu", 8, 2*16, 64), e.wt("d", 8, 64, 16)) }, "f32[T, 64]", ""},
		c{"moe/expert count", func(e *opEnv) *Value { return moe(e, e.wt("gu", 7, 2*16, 64), e.wt("d", 8, 64, 16)) }, "", "E = 8"},
		c{"moe/intermediate", func(e *opEnv) *Value { return moe(e, e.wt("gu", 8*2*16, 64), e.wt("d", 8*64, 8)) }, "", "do not fit hidden"},
		c{"moe/hidden", func(e *opEnv) *Value { return moe(e, e.wt("gu", 8*2*16, 32), e.wt("d", 8*64, 16)) }, "", "do not fit hidden"},
		c{"moe/weights dtype", func(e *opEnv) *Value {
			i := ids(e)
			return e.b.MoE(e.x, i, e.in("w", F32, T, 3), e.wt("gu", 8*32, 64), e.wt("d", 8*64, 16), 8)
		}, "", "weights must be f32[T, 2]"},

		// slice
		c{"slice", func(e *opEnv) *Value { return e.b.Slice(e.q, 4, 12) }, "f32[T, 4, 12]", ""},
		c{"slice/outside", func(e *opEnv) *Value { return e.b.Slice(e.q, 8, 12) }, "", "not inside the last dim"},
		c{"slice/empty", func(e *opEnv) *Value { return e.b.Slice(e.x, 0, 0) }, "", "not inside the last dim"},

		// head_matmul
		c{"head_matmul", func(e *opEnv) *Value { return e.b.HeadMatMul(e.q, e.wt("kvb", 4*24, 16), 8, 16, false) }, "f32[T, 4, 16]", ""},
		c{"head_matmul/transpose", func(e *opEnv) *Value { return e.b.HeadMatMul(e.q, e.wt("kvb", 4*24, 40), 0, 16, true) }, "f32[T, 4, 40]", ""},
		c{"head_matmul/K", func(e *opEnv) *Value { return e.b.HeadMatMul(e.q, e.wt("kvb", 4*24, 40), 0, 8, true) }, "", "disagree on K"},
		c{"head_matmul/rows", func(e *opEnv) *Value { return e.b.HeadMatMul(e.q, e.wt("kvb", 4*24, 16), 16, 16, false) }, "", "not inside a head's 24 rows"},
		c{"head_matmul/heads", func(e *opEnv) *Value { return e.b.HeadMatMul(e.q, e.wt("kvb", 30, 16), 0, 4, false) }, "", "not a multiple of heads"},

		// mla_attention
		c{"mla_attention", func(e *opEnv) *Value {
			return e.b.MLAAttention(e.in("ql", F32, T, 4, 32), e.in("qr", F32, T, 4, 8), e.in("c", F32, T, 32), e.in("kr", F32, T, 8), 0, 0.1)
		}, "f32[T, 4, 32]", ""},
		c{"mla_attention/rank", func(e *opEnv) *Value {
			return e.b.MLAAttention(e.in("ql", F32, T, 4, 32), e.in("qr", F32, T, 4, 8), e.in("c", F32, T, 16), e.in("kr", F32, T, 8), 0, 0.1)
		}, "", "disagree"},
		c{"mla_attention/scale", func(e *opEnv) *Value {
			return e.b.MLAAttention(e.in("ql", F32, T, 4, 32), e.in("qr", F32, T, 4, 8), e.in("c", F32, T, 32), e.in("kr", F32, T, 8), 0, 0)
		}, "", "scale must be > 0"},
		c{"mla_attention/k rank", func(e *opEnv) *Value {
			return e.b.MLAAttention(e.in("ql", F32, T, 4, 32), e.in("qr", F32, T, 4, 8), e.in("c", F32, T, 1, 32), e.in("kr", F32, T, 8), 0, 0.1)
		}, "", "c_kv and k_rope must be float [T, dim]"},
	)
}

// The family's numbers are stored in engines: they must never change.
func TestMoEOpNumbers(t *testing.T) {
	fixed := map[Op]string{64: "router_topk", 65: "router_weights", 66: "moe", 67: "slice", 68: "head_matmul", 69: "mla_attention"}
	for op, name := range fixed {
		if op.String() != name {
			t.Errorf("op %d is %q, want %q: op numbers are append-only", op, op, name)
		}
	}
}

// A graph using every op of the family prints and parses back unchanged.
func TestMoEOpsRoundTrip(t *testing.T) {
	b := NewBuilder("moe")
	x := b.Input("x", F32, T, 16)
	l := b.MatMul(x, b.Weight("gate", BF16, 4, 16))
	ids, w := b.Router(l, b.Weight("bias", F32, 4), RouterOpts{K: 2, Scoring: "sigmoid", Normalize: true, Scale: 1.8})
	y := b.MoE(x, ids, w, b.Concat(0, "gu", b.Weight("g0", BF16, 8, 16), b.Weight("g1", BF16, 8, 16), b.Weight("g2", BF16, 8, 16), b.Weight("g3", BF16, 8, 16)), b.Weight("d", BF16, 4, 16, 4), 4)
	q := b.Reshape(y, T, 2, 8)
	kvb := b.Weight("kvb", BF16, 2*12, 6)
	ql := b.HeadMatMul(b.Slice(q, 0, 4), kvb, 0, 4, true)
	c := b.Cache(CacheSpec{Kind: CacheLatent, DType: F32, Entries: []Shape{Sh(6), Sh(4)}})
	o := b.MLAAttention(ql, b.Slice(q, 4, 4), b.Slice(x, 0, 6), b.Slice(x, 6, 4), c, 0.25)
	b.Output("y", b.HeadMatMul(o, kvb, 4, 8, false))
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	text := Print(g)
	g2, err := Parse(text)
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if got := Print(g2); got != text {
		t.Errorf("round trip changed the graph:\n%s\nvs\n%s", got, text)
	}
	for _, want := range []string{"router_topk(", "router_weights(", "moe(", "section(", "head_matmul(", "mla_attention(", "= latent"} {
		if !strings.Contains(text, want) {
			t.Errorf("text form lacks %q:\n%s", want, text)
		}
	}
}
