package ir

import "fmt"

// Fused ops (32–63): made by the fusion passes (package passes), never by
// model code. Each one is the composition of core ops it replaces, computed
// the same way, so a fused engine matches an unfused one to rounding; the
// backend picks its kernel by the op's attributes, never by model.
const (
	// OpFusedMatMul is a GEMM with an optional prologue and epilogues:
	//
	//	fused_matmul(x [..., K], W [N, K] [, norm_w [K]] [, residual [..., N']])
	//	  {norm=0|1, eps, unit_offset, act="none"|"swiglu", residual=0|1, sections=[n0, n1, ...]}
	//
	//	  x' = norm ? rms_norm(x, norm_w; eps, unit_offset) : x   (prologue: x read once)
	//	  z  = x'·Wᵀ                                              [..., N]
	//	  a  = act == "swiglu" ? silu(z[:, :N/2]) ⊙ z[:, N/2:] : z  [..., N']
	//	  y  = residual ? a + residual : a                        (epilogue)
	//
	// The optional args come in that order, present when their flag is 1.
	// sections lists the widths of the row blocks of W (so of z's columns)
	// when W is a build-time concat of several projections; they must sum to
	// N. Consumers take a block with `section` (ir/op.go), or read the
	// blocks in place when fused further (qkv_attention reads q, k, v out of
	// one row).
	//
	// How the architectures map onto it:
	//   - Qwen3 q/k/v (GQA): W = concat(Wq, Wk, Wv), sections=[Hq·D, Hkv·D, Hkv·D].
	//   - gate/up + SwiGLU: W = concat(Wgate, Wup), sections=[I, I], act="swiglu".
	//   - Qwen3-Next gated attention: q_proj's rows are per head [query D | gate D]
	//     interleaved; they stay interleaved: sections=[Hq·2D, Hkv·D, Hkv·D]
	//     and qkv_attention{gate=1} reads query and gate of head h at h·2D and
	//     h·2D+D.
	//   - GLM-4.7 MLA: q_a_proj and kv_a_proj_with_mqa share x and the input
	//     norm: W = concat(Wq_a, Wkv_a), norm=1, sections=[q_lora_rank,
	//     kv_lora_rank+rope_dim]; each block then takes its own RMSNorm.
	OpFusedMatMul Op = 32
	// 33 is section (ir/op.go), a core op that models use too.
	// OpAddRMSNorm is the residual add and the following RMSNorm in one pass:
	// add_rms_norm(a, b, w) {eps, unit_offset} = rms_norm(a + b, w). Used
	// where the sum has no other reader (the final norm); where it has (the
	// residual stream), the add goes into the producing GEMM's epilogue
	// (fused_matmul residual=1) and the norm into the consuming GEMM's
	// prologue (norm=1) instead, so each op keeps one result.
	OpAddRMSNorm Op = 34
	// OpQKVAttention is the whole attention input path and attention in one
	// step, reading q, k and v in place from one fused projection row:
	//
	//	qkv_attention(qkv [T, Hq·Dq + Hkv·D + Hkv·Dv], pos i32[T] [, q_norm [D], k_norm [D]])
	//	  {heads=[Hq, Hkv], head_dim=D, v_head_dim=Dv, gate=0|1, eps, unit_offset,
	//	   theta, rotary_dims, style, cache, scale} -> [T, Hq, Dv]
	//
	//	  q, k = per-head rms_norm (when the norm args are present), then rope at pos
	//	  k, v -> written into paged KV cache `cache` at each token's slot
	//	  y = causal GQA attention of q over the cache (as `attention`)
	//	  gate=1: Dq = 2D, q's rows are per head [query | gate] (Qwen3-Next),
	//	          and y ⊙= sigmoid(gate)
	//
	// v_head_dim defaults to head_dim. It has the side effect of the cache
	// write, so it is not pure.
	OpQKVAttention Op = 35
	// OpMoERouted is the whole MoE dispatch in one step: router GEMM, top-k
	// choice, expert weights, then the grouped expert GEMMs and the weighted
	// combine of `moe` (ir/op_moe.go):
	//
	//	moe_routed(x [T, H], router [E, H], gate_up, down [, bias [E]] [, norm_w [H]] [, residual [T, H]])
	//	  {k, scoring, normalize, scale, experts, bias=0|1, norm=0|1, eps, unit_offset, residual=0|1} -> [T, H]
	//
	//	  x' = norm ? rms_norm(x, norm_w) : x                              (prologue)
	//	  logits = x'·routerᵀ; ids = router_topk(logits [, bias]); w = router_weights(logits, ids)
	//	  y = moe(x', ids, w, gate_up, down) (+ residual)                  (epilogue)
	//
	// The optional args come in that order, present when their flag is 1.
	// The logits, ids and weights never leave the step.
	OpMoERouted Op = 36
)

func init() {
	defineOp(OpFusedMatMul, OpInfo{Name: "fused_matmul", Args: -1,
		Attrs: []AttrSpec{optBool("norm"), specNormEps, specUnitOffset, optString("act", "none"), optBool("residual"), optInts("sections")},
		Infer: inferFusedMatMul, Pure: true,
		Comment: "y = act(rms_norm?(x)·Wᵀ) + residual?; W may hold concatenated sections"})
	defineOp(OpAddRMSNorm, OpInfo{Name: "add_rms_norm", Args: 3, Attrs: []AttrSpec{specEps, specUnitOffset}, Infer: inferAddRMSNorm, Pure: true,
		Comment: "y = rms_norm(a + b, w)"})
	defineOp(OpQKVAttention, OpInfo{Name: "qkv_attention", Args: -1,
		Attrs: append([]AttrSpec{req("heads", TInts), req("head_dim", TInt), optIntSameAs("v_head_dim", "head_dim"), optBool("gate"),
			specNormEps, specUnitOffset, specCache, specScale}, specRoPE...),
		Infer: inferQKVAttention, Pure: false,
		Comment: "q/k norm + rope + kv-cache write + causal attention over one fused qkv row"})
	defineOp(OpMoERouted, OpInfo{Name: "moe_routed", Args: -1,
		Attrs: []AttrSpec{specK, specScoring, specNormalize, specRouterScale, specExperts,
			optBool("bias"), optBool("norm"), specNormEps, specUnitOffset, optBool("residual")},
		Infer: inferMoERouted, Pure: true,
		Comment: "moe(x, router_topk(x·Rᵀ), router_weights(x·Rᵀ, ·), gate_up, down) in one step"})
}

// MoERoutedLayout returns the arg positions of a moe_routed's optional
// operands from its attributes (-1 when absent) and the number of args.
func MoERoutedLayout(at AttrReader) (biasArg, normArg, residualArg, nargs int) {
	biasArg, normArg, residualArg, nargs = -1, -1, -1, 4
	for _, f := range []struct {
		key string
		arg *int
	}{{"bias", &biasArg}, {"norm", &normArg}, {"residual", &residualArg}} {
		if at.Bool(f.key) {
			*f.arg = nargs
			nargs++
		}
	}
	return
}

func inferMoERouted(a []*Value, at AttrReader) (DType, Shape, error) {
	biasArg, normArg, resArg, nargs := MoERoutedLayout(at)
	if len(a) != nargs {
		return 0, nil, fmt.Errorf("want %d args (x, router, gate_up, down, then bias, norm_w, residual as flagged), got %d", nargs, len(a))
	}
	if normArg >= 0 {
		if _, _, err := inferRMSNorm([]*Value{a[0], a[normArg]}, at); err != nil {
			return 0, nil, fmt.Errorf("norm: %w", err)
		}
	}
	if resArg >= 0 && (!isFloat(a[resArg]) || !a[resArg].Shape.Equal(a[0].Shape)) {
		return 0, nil, fmt.Errorf("residual %v%v does not match x %v", a[resArg].DType, a[resArg].Shape, a[0].Shape)
	}
	dt, sh, err := inferMatMul(a[:2], AttrReader{})
	if err != nil {
		return 0, nil, fmt.Errorf("router: %w", err)
	}
	logits := &Value{DType: dt, Shape: sh}
	topk := []*Value{logits}
	if biasArg >= 0 {
		topk = append(topk, a[biasArg])
	}
	dt, sh, err = inferRouterTopK(topk, at)
	if err != nil {
		return 0, nil, err
	}
	ids := &Value{DType: dt, Shape: sh}
	dt, sh, err = inferRouterWeights([]*Value{logits, ids}, at)
	if err != nil {
		return 0, nil, err
	}
	return inferMoE([]*Value{a[0], ids, {DType: dt, Shape: sh}, a[2], a[3]}, at)
}

// FusedMatMulLayout returns the arg positions of a fused_matmul's optional
// operands from its attributes (-1 when absent) and the number of args.
func FusedMatMulLayout(at AttrReader) (normArg, residualArg, nargs int) {
	normArg, residualArg, nargs = -1, -1, 2
	if at.Bool("norm") {
		normArg = nargs
		nargs++
	}
	if at.Bool("residual") {
		residualArg = nargs
		nargs++
	}
	return
}

func inferFusedMatMul(a []*Value, at AttrReader) (DType, Shape, error) {
	normArg, resArg, nargs := FusedMatMulLayout(at)
	if len(a) != nargs {
		return 0, nil, fmt.Errorf("want %d args for norm=%d residual=%d, got %d", nargs, b2i(at.Bool("norm")), b2i(at.Bool("residual")), len(a))
	}
	_, out, err := inferMatMul(a[:2], AttrReader{})
	if err != nil {
		return 0, nil, err
	}
	n := a[1].Shape[0]
	if normArg >= 0 {
		if _, _, err := inferRMSNorm([]*Value{a[0], a[normArg]}, at); err != nil {
			return 0, nil, fmt.Errorf("norm: %w", err)
		}
	}
	s := at.Ints("sections")
	if at.Has("sections") {
		var sum Dim
		for _, d := range s {
			if d <= 0 {
				return 0, nil, fmt.Errorf("sections %v must be positive", s)
			}
			sum += Dim(d)
		}
		if sum != n {
			return 0, nil, fmt.Errorf("sections %v do not sum to W's %v rows", s, n)
		}
	}
	switch act := at.String("act"); act {
	case "none":
	case "swiglu":
		if n%2 != 0 {
			return 0, nil, fmt.Errorf("swiglu needs an even number of rows, W has %v", n)
		}
		if at.Has("sections") && (len(s) != 2 || s[0] != s[1]) {
			return 0, nil, fmt.Errorf("swiglu sections must be [I, I], got %v", s)
		}
		out[len(out)-1] = n / 2
	default:
		return 0, nil, fmt.Errorf("act must be \"none\" or \"swiglu\", got %q", act)
	}
	if resArg >= 0 {
		r := a[resArg]
		if !isFloat(r) || !r.Shape.Equal(out) {
			return 0, nil, fmt.Errorf("residual %v%v does not match the result %v", r.DType, r.Shape, out)
		}
	}
	return F32, out, nil
}

func inferAddRMSNorm(a []*Value, at AttrReader) (DType, Shape, error) {
	if _, _, err := inferBinary(a[:2], AttrReader{}); err != nil {
		return 0, nil, err
	}
	return inferRMSNorm([]*Value{a[0], a[2]}, at)
}

func inferQKVAttention(a []*Value, at AttrReader) (DType, Shape, error) {
	if len(a) != 2 && len(a) != 4 {
		return 0, nil, fmt.Errorf("want 2 args (qkv, pos) or 4 (with q_norm, k_norm), got %d", len(a))
	}
	qkv, pos := a[0], a[1]
	heads := at.Ints("heads")
	d, dv := at.Int("head_dim"), at.Int("v_head_dim")
	if len(heads) != 2 || heads[0] <= 0 || heads[1] <= 0 || heads[0]%heads[1] != 0 {
		return 0, nil, fmt.Errorf("heads must be [Hq, Hkv] with Hq a multiple of Hkv, got %v", heads)
	}
	if d <= 0 || dv <= 0 {
		return 0, nil, fmt.Errorf("head_dim %d and v_head_dim %d must be > 0", d, dv)
	}
	dq := d
	if at.Bool("gate") {
		dq = 2 * d
	}
	want := Dim(heads[0]*dq + heads[1]*d + heads[1]*dv)
	if !isFloat(qkv) || len(qkv.Shape) != 2 || qkv.Shape[0] != T || qkv.Shape[1] != want {
		return 0, nil, fmt.Errorf("qkv must be float [T, %v], got %v%v", want, qkv.DType, qkv.Shape)
	}
	if pos.DType != I32 || !pos.Shape.Equal(Sh(T)) {
		return 0, nil, fmt.Errorf("positions must be i32[T], got %v%v", pos.DType, pos.Shape)
	}
	if len(a) == 4 {
		for _, w := range a[2:] {
			if !isFloat(w) || !w.Shape.Equal(Sh(Dim(d))) {
				return 0, nil, fmt.Errorf("q/k norm weights must be float [%d], got %v%v", d, w.DType, w.Shape)
			}
		}
		if eps := at.Float("eps"); !(eps > 0) {
			return 0, nil, fmt.Errorf("eps must be > 0")
		}
	}
	if _, _, err := inferRoPE([]*Value{{DType: F32, Shape: Sh(T, Dim(heads[0]), Dim(d))}, pos}, at); err != nil {
		return 0, nil, err
	}
	if err := checkCacheScale(at); err != nil {
		return 0, nil, err
	}
	return F32, Sh(T, Dim(heads[0]), Dim(dv)), nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
