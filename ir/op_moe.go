package ir

import "fmt"

// The MoE and MLA family (op numbers 64–95): top-k routing, the routed
// experts, and multi-head latent attention over a latent cache.
//
// Routing is split into two ops so that every value has one result:
// router_topk chooses the experts, router_weights gives them their weights
// (both read the same router logits; the weights op recomputes k scores,
// which is negligible next to the experts). moe then runs only the experts
// some token chose.
//
// Stacked expert weights are plain 2-D (or 3-D) weights whose rows are the
// experts one after another: gate_up [E·2I, H] (per expert I gate rows,
// then I up rows) and down [E·H, I]. A checkpoint with transformers v5's
// fused 3-D tensors ([E, 2I, H], [E, H, I]) binds them as they are; hub
// per-expert tensors are joined at build time by a concat of weights along
// axis 0 (Builder.Concat), so the runtime never assembles experts.
const (
	OpRouterTopK    Op = 64 // ids[t] = the k experts of highest score(logits[t]) (+ bias); i32[T, k]
	OpRouterWeights Op = 65 // w[t, j] = score(logits[t])[ids[t, j]], optionally /Σ, then ·scale
	OpMoE           Op = 66 // y[t] = Σ_j w[t,j] · down_e(silu(gate_e x[t]) ⊙ up_e x[t]), e = ids[t,j]
	// 67 was slice, x[..., start:start+len]: retired, read as section
	// (ir/op.go) with len renamed size.
	opSliceRetired Op = 67
	OpHeadMatMul   Op = 68 // y[t,h] = B_h·x[t,h] (or B_hᵀ·x[t,h]), B_h = rows start.. of head h's block of W
	OpMLAAttention Op = 69 // causal attention over the latent cache in absorbed form; appends c_kv, k_rope
)

// The routing attributes, shared with moe_routed (ir/op_fused.go).
var (
	specK           = req("k", TInt)          // experts per token
	specScoring     = req("scoring", TString) // "softmax" or "sigmoid"
	specNormalize   = optBool("normalize")    // divide the k weights by their sum
	specRouterScale = optFloat("scale", 1)    // multiply the weights (routed_scaling_factor)
	specExperts     = req("experts", TInt)    // experts stacked in the gate_up and down weights
)

func init() {
	defineOp(OpRouterTopK, OpInfo{Name: "router_topk", Args: -1, Attrs: []AttrSpec{specK, specScoring}, Infer: inferRouterTopK, Pure: true,
		Comment: "top-k experts of softmax|sigmoid(logits) (+ selection-only bias); ties go to the lower index"})
	defineOp(OpRouterWeights, OpInfo{Name: "router_weights", Args: 2, Attrs: []AttrSpec{specScoring, specNormalize, specRouterScale},
		Infer: inferRouterWeights, Pure: true,
		Comment: "scores of the chosen experts; /Σ if normalize=1; ·scale"})
	defineOp(OpMoE, OpInfo{Name: "moe", Args: 5, Attrs: []AttrSpec{specExperts}, Infer: inferMoE, Pure: true,
		Comment: "Σ_j w_j · down_e(silu(gate_e x) ⊙ up_e x) over the chosen experts e = ids_j"})
	retire(opSliceRetired, "slice", Retirement{By: OpSection, Rename: map[string]string{"len": "size"}})
	defineOp(OpHeadMatMul, OpInfo{Name: "head_matmul", Args: 2, Attrs: []AttrSpec{req("start", TInt), req("rows", TInt), optBool("transpose")},
		Infer: inferHeadMatMul, Pure: true,
		Comment: "per-head y[h] = W[h][start:start+rows]·x[h] (transpose=1: its transpose)"})
	defineOp(OpMLAAttention, OpInfo{Name: "mla_attention", Args: 4, Attrs: []AttrSpec{specCache, specScale}, Infer: inferMLAAttention, Pure: false,
		Comment: "causal latent attention: softmax((q_lat·c_kv + q_rope·k_rope)·scale)·c_kv; appends c_kv, k_rope to the cache"})
}

// isTokenRows reports whether s is [T, n] with n static.
func isTokenRows(s Shape) bool { return len(s) == 2 && s[0] == T && !s[1].Symbolic() }

func inferRouterTopK(a []*Value, at AttrReader) (DType, Shape, error) {
	if len(a) != 1 && len(a) != 2 {
		return 0, nil, fmt.Errorf("want logits and an optional bias, got %d args", len(a))
	}
	logits := a[0]
	if !isFloat(logits) || !isTokenRows(logits.Shape) {
		return 0, nil, fmt.Errorf("logits must be float [T, experts], got %v%v", logits.DType, logits.Shape)
	}
	e := logits.Shape[1]
	if len(a) == 2 && (!isFloat(a[1]) || !a[1].Shape.Equal(Sh(e))) {
		return 0, nil, fmt.Errorf("bias must be float [%v], got %v%v", e, a[1].DType, a[1].Shape)
	}
	if k := at.Int("k"); k < 1 || Dim(k) > e {
		return 0, nil, fmt.Errorf("k %d must be in [1, %v]", k, e)
	}
	if err := checkScoring(at); err != nil {
		return 0, nil, err
	}
	return I32, Sh(T, Dim(at.Int("k"))), nil
}

func checkScoring(at AttrReader) error {
	if s := at.String("scoring"); s != "softmax" && s != "sigmoid" {
		return fmt.Errorf("scoring must be \"softmax\" or \"sigmoid\", got %q", s)
	}
	return nil
}

func inferRouterWeights(a []*Value, at AttrReader) (DType, Shape, error) {
	logits, ids := a[0], a[1]
	if !isFloat(logits) || !isTokenRows(logits.Shape) {
		return 0, nil, fmt.Errorf("logits must be float [T, experts], got %v%v", logits.DType, logits.Shape)
	}
	if ids.DType != I32 || !isTokenRows(ids.Shape) {
		return 0, nil, fmt.Errorf("ids must be i32[T, k], got %v%v", ids.DType, ids.Shape)
	}
	if err := checkScoring(at); err != nil {
		return 0, nil, err
	}
	if sc := at.Float("scale"); !(sc > 0) {
		return 0, nil, fmt.Errorf("scale must be > 0")
	}
	return F32, ids.Shape.Clone(), nil
}

func inferMoE(a []*Value, at AttrReader) (DType, Shape, error) {
	x, ids, w, gu, down := a[0], a[1], a[2], a[3], a[4]
	if !isFloat(x) || !isTokenRows(x.Shape) {
		return 0, nil, fmt.Errorf("x must be float [T, hidden], got %v%v", x.DType, x.Shape)
	}
	if ids.DType != I32 || !isTokenRows(ids.Shape) {
		return 0, nil, fmt.Errorf("ids must be i32[T, k], got %v%v", ids.DType, ids.Shape)
	}
	if w.DType != F32 || !w.Shape.Equal(ids.Shape) {
		return 0, nil, fmt.Errorf("weights must be f32%v like ids, got %v%v", ids.Shape, w.DType, w.Shape)
	}
	e := at.Int("experts")
	if e < 1 {
		return 0, nil, fmt.Errorf("experts must be >= 1")
	}
	h := x.Shape[1]
	guRows, guCols, ok1 := stackedExperts(gu, e)
	dRows, dCols, ok2 := stackedExperts(down, e)
	if !ok1 || !ok2 || !isFloat(gu) || !isFloat(down) {
		return 0, nil, fmt.Errorf("expert weights must be static float [E·rows, cols] or [E, rows, cols] with E = %d, got %v%v and %v%v", e, gu.DType, gu.Shape, down.DType, down.Shape)
	}
	if guCols != h || guRows%2 != 0 || dRows != h || dCols != guRows/2 {
		return 0, nil, fmt.Errorf("gate_up %v and down %v do not fit hidden %v (want [E·2I, %v] and [E·%v, I])", gu.Shape, down.Shape, h, h, h)
	}
	return F32, x.Shape.Clone(), nil
}

// stackedExperts returns the per-expert rows and the columns of a stacked
// expert weight, [E·rows, cols] or [E, rows, cols].
func stackedExperts(v *Value, e int64) (rows, cols Dim, ok bool) {
	s := v.Shape
	for _, d := range s {
		if d.Symbolic() {
			return 0, 0, false
		}
	}
	switch len(s) {
	case 2:
		if s[0]%Dim(e) != 0 {
			return 0, 0, false
		}
		return s[0] / Dim(e), s[1], true
	case 3:
		return s[1], s[2], s[0] == Dim(e)
	}
	return 0, 0, false
}

func inferHeadMatMul(a []*Value, at AttrReader) (DType, Shape, error) {
	x, w := a[0], a[1]
	if !isFloat(x) || len(x.Shape) != 3 || x.Shape[0] != T || x.Shape[1].Symbolic() || x.Shape[2].Symbolic() {
		return 0, nil, fmt.Errorf("x must be float [T, heads, K], got %v%v", x.DType, x.Shape)
	}
	if !isFloat(w) || len(w.Shape) != 2 || w.Shape[0].Symbolic() || w.Shape[1].Symbolic() {
		return 0, nil, fmt.Errorf("weight must be a static float [heads·P, R], got %v%v", w.DType, w.Shape)
	}
	heads := x.Shape[1]
	if heads == 0 || w.Shape[0]%heads != 0 {
		return 0, nil, fmt.Errorf("weight rows %v are not a multiple of heads %v", w.Shape[0], heads)
	}
	per := w.Shape[0] / heads
	start, rows := at.Int("start"), at.Int("rows")
	if start < 0 || rows < 1 || Dim(start+rows) > per {
		return 0, nil, fmt.Errorf("rows [%d, %d) are not inside a head's %v rows", start, start+rows, per)
	}
	k, n := w.Shape[1], Dim(rows)
	if at.Bool("transpose") {
		k, n = n, k
	}
	if x.Shape[2] != k {
		return 0, nil, fmt.Errorf("x %v and the head blocks of %v disagree on K (%v)", x.Shape, w.Shape, k)
	}
	return F32, Sh(T, heads, n), nil
}

func inferMLAAttention(a []*Value, at AttrReader) (DType, Shape, error) {
	qLat, qRope, ckv, kRope := a[0], a[1], a[2], a[3]
	for _, q := range a[:2] {
		if !isFloat(q) || len(q.Shape) != 3 || q.Shape[0] != T || q.Shape[1].Symbolic() || q.Shape[2].Symbolic() {
			return 0, nil, fmt.Errorf("q_lat and q_rope must be float [T, heads, dim], got %v%v", q.DType, q.Shape)
		}
	}
	for _, k := range a[2:] {
		if !isFloat(k) || !isTokenRows(k.Shape) {
			return 0, nil, fmt.Errorf("c_kv and k_rope must be float [T, dim], got %v%v", k.DType, k.Shape)
		}
	}
	if qLat.Shape[1] != qRope.Shape[1] || qLat.Shape[2] != ckv.Shape[1] || qRope.Shape[2] != kRope.Shape[1] {
		return 0, nil, fmt.Errorf("q_lat %v, q_rope %v, c_kv %v and k_rope %v disagree", qLat.Shape, qRope.Shape, ckv.Shape, kRope.Shape)
	}
	if err := checkCacheScale(at); err != nil {
		return 0, nil, err
	}
	return F32, qLat.Shape.Clone(), nil
}

// RouterOpts configure top-k routing.
type RouterOpts struct {
	K         int
	Scoring   string  // "softmax" (f32, over all experts) or "sigmoid"
	Normalize bool    // divide the k weights by their sum
	Scale     float64 // multiply the weights (routed_scaling_factor); 0 means 1
}

// Router chooses experts from logits [T, E]: ids i32[T, k] and weights
// f32[T, k]. bias (nil or [E]) is added to the scores for selection only.
func (b *Builder) Router(logits, bias *Value, o RouterOpts) (ids, weights *Value) {
	args := []*Value{logits}
	if bias != nil {
		args = append(args, bias)
	}
	ids = b.Op(OpRouterTopK, args, Int("k", int64(o.K)), Str("scoring", o.Scoring))
	attrs := []Attr{Str("scoring", o.Scoring)}
	if o.Normalize {
		attrs = append(attrs, Int("normalize", 1))
	}
	if o.Scale != 0 && o.Scale != 1 {
		attrs = append(attrs, Float("scale", o.Scale))
	}
	return ids, b.Op(OpRouterWeights, []*Value{logits, ids}, attrs...)
}

// MoE: x [T, H], ids i32[T, k], weights f32[T, k], gateUp [E·2I, H] (or
// [E, 2I, H]), down [E·H, I] (or [E, H, I]) -> [T, H].
func (b *Builder) MoE(x, ids, weights, gateUp, down *Value, experts int) *Value {
	return b.Op(OpMoE, []*Value{x, ids, weights, gateUp, down}, Int("experts", int64(experts)))
}

// Slice keeps channels [start, start+n) of the last dim: a section.
func (b *Builder) Slice(x *Value, start, n int) *Value {
	return b.Op(OpSection, []*Value{x}, Int("start", int64(start)), Int("size", int64(n)))
}

// HeadMatMul applies per-head weight blocks: w [heads·P, R] is viewed as
// [heads, P, R] and head h uses rows [start, start+rows) of its block,
// B_h [rows, R]. x [T, heads, R] -> [T, heads, rows] (y = B_h·x), or with
// transpose x [T, heads, rows] -> [T, heads, R] (y = B_hᵀ·x).
func (b *Builder) HeadMatMul(x, w *Value, start, rows int, transpose bool) *Value {
	attrs := []Attr{Int("start", int64(start)), Int("rows", int64(rows))}
	if transpose {
		attrs = append(attrs, Int("transpose", 1))
	}
	return b.Op(OpHeadMatMul, []*Value{x, w}, attrs...)
}

// MLAAttention: q_lat [T, H, R], q_rope [T, H, Dr], c_kv [T, R], k_rope
// [T, Dr] -> o_lat [T, H, R], causal, through the latent cache with index
// cache (entries c_kv [R] and k_rope [Dr]).
func (b *Builder) MLAAttention(qLat, qRope, ckv, kRope *Value, cache int, scale float64) *Value {
	return b.Op(OpMLAAttention, []*Value{qLat, qRope, ckv, kRope}, Int("cache", int64(cache)), Float("scale", scale))
}
