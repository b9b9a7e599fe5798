package ir

import "fmt"

// The Gated DeltaNet family (op numbers 96–127): Qwen3-Next's linear-attention
// layers and the broadcast product its gated shared expert needs.
//
// A DeltaNet layer keeps two per-sequence state caches (kind CacheState, one
// slot per sequence, overwritten every step): the conv state [C, K−1] (the
// last K−1 inputs of the depthwise convolution) and the recurrent state
// [Hv, dk, dv] (f32). A sequence whose run in a step starts at position 0
// starts from zero state, whatever its slot held before; so a slot needs no
// explicit reset, and a sequence may only continue from position p > 0 in
// the slot that holds its own state after p tokens.
const (
	OpConv1DCausal   Op = 96 // y[t,c] = act(Σ_j w[c,j]·x[t−K+1+j, c]), earlier inputs from the conv state; state ← last K−1 inputs
	OpGatedDeltaRule Op = 97 // S ← e^g·S; S ← S + β·k(v − Sᵀk)ᵀ; o = Sᵀq (q, k l2-normalised, q·scale), per value head
	OpDeltaNetDecay  Op = 98 // g = −exp(A_log)·softplus(a + dt_bias), the per-head log-decay (≤ 0)
	OpMulRows        Op = 99 // y[t, ...] = x[t, ...]·s[t] (s is [T, 1]): a per-token scale such as a sigmoid gate
)

// maxDeltaNetKernel bounds the conv kernel length (Qwen3-Next uses 4).
const maxDeltaNetKernel = 64

// The delta rule's attributes, shared with deltanet_core
// (ir/op_fused_deltanet.go).
var specDeltaRule = []AttrSpec{
	specCache,
	req("scale", TFloat), // applied to q after normalisation, > 0
	optBool("l2norm"),    // l2-normalise q and k (eps 1e-6) first
	optInt("chunk", 64),  // chunk length of the chunked form, in [1, 1024]
}

func init() {
	defineOp(OpConv1DCausal, OpInfo{Name: "conv1d_causal", Args: 2, Attrs: []AttrSpec{specCache, optString("activation", "")},
		Infer: inferConv1DCausal, Pure: false,
		Comment: "depthwise causal conv over T per sequence (activation=\"silu\" optional); reads and rewrites the conv state"})
	defineOp(OpGatedDeltaRule, OpInfo{Name: "gated_delta_rule", Args: 5, Attrs: specDeltaRule, Infer: inferGatedDeltaRule, Pure: false,
		Comment: "gated delta rule per value head (chunked for runs > 1 token, chunk attr, default 64); l2norm=1 normalises q, k; updates the state"})
	defineOp(OpDeltaNetDecay, OpInfo{Name: "deltanet_decay", Args: 3, Infer: inferDeltaNetDecay, Pure: true,
		Comment: "g = −exp(A_log)·softplus(a + dt_bias)"})
	defineOp(OpMulRows, OpInfo{Name: "mul_rows", Args: 2, Infer: inferMulRows, Pure: true,
		Comment: "y[t] = x[t]·s[t, 0]"})
}

func inferConv1DCausal(a []*Value, at AttrReader) (DType, Shape, error) {
	x, w := a[0], a[1]
	if !isFloat(x) || !isTokenRows(x.Shape) {
		return 0, nil, fmt.Errorf("x must be float [T, channels], got %v%v", x.DType, x.Shape)
	}
	if err := checkConvWeight(w, x.Shape[1]); err != nil {
		return 0, nil, err
	}
	if s := at.String("activation"); s != "" && s != "silu" {
		return 0, nil, fmt.Errorf("activation must be \"silu\" or absent, got %q", s)
	}
	if at.Int("cache") < 0 {
		return 0, nil, fmt.Errorf("cache index must be >= 0")
	}
	return F32, x.Shape.Clone(), nil
}

// checkConvWeight checks a depthwise conv weight of c channels.
func checkConvWeight(w *Value, c Dim) error {
	var k Dim
	switch {
	case len(w.Shape) == 2 && w.Shape[0] == c && !w.Shape[1].Symbolic():
		k = w.Shape[1]
	case len(w.Shape) == 3 && w.Shape[0] == c && w.Shape[1] == 1 && !w.Shape[2].Symbolic():
		k = w.Shape[2]
	}
	if !isFloat(w) || k < 2 || k > maxDeltaNetKernel {
		return fmt.Errorf("weight must be float [%v, K] or [%v, 1, K] with 2 <= K <= %d, got %v%v", c, c, maxDeltaNetKernel, w.DType, w.Shape)
	}
	return nil
}

func isHeads(s Shape) bool {
	return len(s) == 3 && s[0] == T && !s[1].Symbolic() && !s[2].Symbolic() && s[1] > 0 && s[2] > 0
}

func inferGatedDeltaRule(a []*Value, at AttrReader) (DType, Shape, error) {
	q, k, v, g, beta := a[0], a[1], a[2], a[3], a[4]
	for _, x := range a[:3] {
		if !isFloat(x) || !isHeads(x.Shape) {
			return 0, nil, fmt.Errorf("q, k, v must be float [T, heads, dim], got %v%v", x.DType, x.Shape)
		}
	}
	if !q.Shape.Equal(k.Shape) {
		return 0, nil, fmt.Errorf("q %v and k %v differ", q.Shape, k.Shape)
	}
	hk, hv := q.Shape[1], v.Shape[1]
	if hv%hk != 0 {
		return 0, nil, fmt.Errorf("value heads %v must be a multiple of key heads %v", hv, hk)
	}
	for _, x := range []*Value{g, beta} {
		if !isFloat(x) || !x.Shape.Equal(Sh(T, hv)) {
			return 0, nil, fmt.Errorf("g and beta must be float [T, %v], got %v%v", hv, x.DType, x.Shape)
		}
	}
	if c := at.Int("chunk"); c < 1 || c > 1024 {
		return 0, nil, fmt.Errorf("chunk %d must be in [1, 1024]", c)
	}
	if err := checkCacheScale(at); err != nil {
		return 0, nil, err
	}
	return F32, v.Shape.Clone(), nil
}

func inferDeltaNetDecay(a []*Value, _ AttrReader) (DType, Shape, error) {
	x, alog, bias := a[0], a[1], a[2]
	if !isFloat(x) || !isTokenRows(x.Shape) {
		return 0, nil, fmt.Errorf("a must be float [T, heads], got %v%v", x.DType, x.Shape)
	}
	h := x.Shape[1]
	for _, w := range []*Value{alog, bias} {
		if !isFloat(w) || !w.Shape.Equal(Sh(h)) {
			return 0, nil, fmt.Errorf("A_log and dt_bias must be float [%v], got %v%v", h, w.DType, w.Shape)
		}
	}
	return F32, x.Shape.Clone(), nil
}

func inferMulRows(a []*Value, _ AttrReader) (DType, Shape, error) {
	x, s := a[0], a[1]
	if !isFloat(x) || len(x.Shape) < 2 || x.Shape[0] != T {
		return 0, nil, fmt.Errorf("x must be float [T, ...], got %v%v", x.DType, x.Shape)
	}
	if !isFloat(s) || !s.Shape.Equal(Sh(T, 1)) {
		return 0, nil, fmt.Errorf("s must be float [T, 1], got %v%v", s.DType, s.Shape)
	}
	return F32, x.Shape.Clone(), nil
}

// Conv1DCausal: x [T, C], w [C, 1, K] (or [C, K]) -> [T, C], through the
// state cache with index cache (entry [C, K−1]); silu applies SiLU.
func (b *Builder) Conv1DCausal(x, w *Value, cache int, silu bool) *Value {
	attrs := []Attr{Int("cache", int64(cache))}
	if silu {
		attrs = append(attrs, Str("activation", "silu"))
	}
	return b.Op(OpConv1DCausal, []*Value{x, w}, attrs...)
}

// DeltaRuleOpts configure GatedDeltaRule.
type DeltaRuleOpts struct {
	Scale  float64 // applied to q after normalisation (dk^−0.5 in Qwen3-Next)
	L2Norm bool    // l2-normalise q and k (eps 1e-6) first
	Chunk  int     // chunk length of the chunked form; 0 means 64
}

// GatedDeltaRule: q, k [T, Hk, dk], v [T, Hv, dv], g, beta [T, Hv] ->
// [T, Hv, dv], through the state cache with index cache (entry [Hv, dk, dv]).
// Value head h reads key head h/(Hv/Hk).
func (b *Builder) GatedDeltaRule(q, k, v, g, beta *Value, cache int, o DeltaRuleOpts) *Value {
	attrs := []Attr{Int("cache", int64(cache)), Float("scale", o.Scale)}
	if o.L2Norm {
		attrs = append(attrs, Int("l2norm", 1))
	}
	if o.Chunk != 0 && o.Chunk != 64 {
		attrs = append(attrs, Int("chunk", int64(o.Chunk)))
	}
	return b.Op(OpGatedDeltaRule, []*Value{q, k, v, g, beta}, attrs...)
}

// DeltaNetDecay: a [T, H], aLog [H], dtBias [H] -> g [T, H].
func (b *Builder) DeltaNetDecay(a, aLog, dtBias *Value) *Value {
	return b.Op(OpDeltaNetDecay, []*Value{a, aLog, dtBias})
}

// MulRows: x [T, ...], s [T, 1] -> x scaled row by row.
func (b *Builder) MulRows(x, s *Value) *Value { return b.Op(OpMulRows, []*Value{x, s}) }
