package ir

import "fmt"

// Fused DeltaNet ops (in the fused range 32–63), made by passes.FuseDeltaNet.
const (
	// OpDeltaNetCore is the gated delta rule and the gated RMSNorm that
	// follows it in Qwen3-Next's mixer, in one step:
	//
	//	deltanet_core(q [T, Hk, dk], k [T, Hk, dk], v [T, Hv, dv], g [T, Hv], beta [T, Hv], z [T, Hv, dv], norm_w [dv])
	//	  {cache, scale, l2norm, chunk, eps} -> [T, Hv, dv]
	//
	//	  o = gated_delta_rule(q, k, v, g, beta){cache, scale, l2norm, chunk}
	//	  y = rms_norm(o, norm_w){eps} ⊙ silu(z)            (epilogue, per value head)
	//
	// With zrow=start, z is instead the projected row [T, W] and z of value
	// head h is read in place from its grouped qkvz block at start (per key
	// head j: [q_j ‖ k_j ‖ v (r·dv) ‖ z (r·dv)], r = Hv/Hk, as deltanet_prep).
	// o never leaves the step. It updates the recurrent state, so it is not
	// pure.
	OpDeltaNetCore Op = 37
	// OpDeltaNetPrep is everything between Qwen3-Next's DeltaNet input
	// projections and the delta rule, in one step, reading the projected row
	// in place:
	//
	//	deltanet_prep(x [T, W], conv_w [C, 1, K] (or [C, K]), A_log [Hv], dt_bias [Hv])
	//	  {cache, heads=[Hk, Hv], dims=[dk, dv], qkvz=start, ba=start} -> [T, C + 2·Hv]
	//
	//	  x[:, qkvz:] holds per key head j [q_j (dk) ‖ k_j (dk) ‖ v of its r = Hv/Hk value heads (r·dv) ‖ z (r·dv)]
	//	  x[:, ba:]   holds per key head j [b (r) ‖ a (r)]
	//	  y[:, :C]        = conv1d_causal(q ‖ k ‖ v, conv_w){activation="silu", cache}  (C = 2·Hk·dk + Hv·dv, head-major)
	//	  y[:, C:C+Hv]    = deltanet_decay(a, A_log, dt_bias)
	//	  y[:, C+Hv:]     = sigmoid(b)
	//
	// Consumers read the three blocks with `section`. It rewrites the conv
	// state, so it is not pure.
	OpDeltaNetPrep Op = 38
)

func init() {
	defineOp(OpDeltaNetCore, OpInfo{Name: "deltanet_core", Args: 7,
		Attrs: append([]AttrSpec{specEps, optInt("zrow", -1)}, specDeltaRule...), Infer: inferDeltaNetCore, Pure: false,
		Comment: "rms_norm(gated_delta_rule(q, k, v, g, beta), w) ⊙ silu(z) in one step; updates the state"})
	defineOp(OpDeltaNetPrep, OpInfo{Name: "deltanet_prep", Args: 4,
		Attrs: []AttrSpec{specCache, req("heads", TInts), req("dims", TInts), req("qkvz", TInt), req("ba", TInt)},
		Infer: inferDeltaNetPrep, Pure: false,
		Comment: "[silu(conv1d_causal(q ‖ k ‖ v)) ‖ decay(a) ‖ sigmoid(b)] from the projected qkvz/ba row; updates the conv state"})
}

// DeltaNetPrepLayout returns deltanet_prep's head counts and dims, and the
// conv channels C = 2·Hk·dk + Hv·dv.
func DeltaNetPrepLayout(at AttrReader) (hk, hv, dk, dv, c int) {
	h, d := at.Ints("heads"), at.Ints("dims")
	if len(h) != 2 || len(d) != 2 {
		return 0, 0, 0, 0, 0
	}
	hk, hv, dk, dv = int(h[0]), int(h[1]), int(d[0]), int(d[1])
	return hk, hv, dk, dv, 2*hk*dk + hv*dv
}

func inferDeltaNetPrep(a []*Value, at AttrReader) (DType, Shape, error) {
	x, alog, bias := a[0], a[2], a[3]
	hk, hv, dk, dv, c := DeltaNetPrepLayout(at)
	if hk <= 0 || hv <= 0 || dk <= 0 || dv <= 0 || hv%hk != 0 {
		return 0, nil, fmt.Errorf("heads=[Hk, Hv] and dims=[dk, dv] must be > 0 with Hv a multiple of Hk")
	}
	if !isFloat(x) || !isTokenRows(x.Shape) {
		return 0, nil, fmt.Errorf("x must be float [T, width], got %v%v", x.DType, x.Shape)
	}
	w := int64(x.Shape[1])
	qkvz, ba := at.Int("qkvz"), at.Int("ba")
	if qkvz < 0 || qkvz+int64(2*hk*dk+2*hv*dv) > w || ba < 0 || ba+int64(2*hv) > w {
		return 0, nil, fmt.Errorf("qkvz block [%d, +%d) or ba block [%d, +%d) outside the row of %d", qkvz, 2*hk*dk+2*hv*dv, ba, 2*hv, w)
	}
	if err := checkConvWeight(a[1], Dim(c)); err != nil {
		return 0, nil, err
	}
	if at.Int("cache") < 0 {
		return 0, nil, fmt.Errorf("cache index must be >= 0")
	}
	if _, _, err := inferDeltaNetDecay([]*Value{{DType: F32, Shape: Sh(T, Dim(hv))}, alog, bias}, AttrReader{}); err != nil {
		return 0, nil, err
	}
	return F32, Sh(T, Dim(c+2*hv)), nil
}

func inferDeltaNetCore(a []*Value, at AttrReader) (DType, Shape, error) {
	dt, sh, err := inferGatedDeltaRule(a[:5], at)
	if err != nil {
		return 0, nil, err
	}
	z, w := a[5], a[6]
	if off := at.Int("zrow"); off >= 0 {
		hk, dk, hv, dv := int64(a[0].Shape[1]), int64(a[0].Shape[2]), int64(sh[1]), int64(sh[2])
		if !isFloat(z) || !isTokenRows(z.Shape) || off+2*hk*dk+2*hv*dv > int64(z.Shape[1]) {
			return 0, nil, fmt.Errorf("z row must be float [T, W] holding the qkvz block [%d, +%d), got %v%v", off, 2*hk*dk+2*hv*dv, z.DType, z.Shape)
		}
	} else if !isFloat(z) || !z.Shape.Equal(sh) {
		return 0, nil, fmt.Errorf("z must be float %v, got %v%v", sh, z.DType, z.Shape)
	}
	if !isFloat(w) || !w.Shape.Equal(Sh(sh[2])) {
		return 0, nil, fmt.Errorf("norm weight must be float [%v], got %v%v", sh[2], w.DType, w.Shape)
	}
	if e := at.Float("eps"); !(e > 0) {
		return 0, nil, fmt.Errorf("eps must be > 0")
	}
	return dt, sh, nil
}
