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
	// o never leaves the step. It updates the recurrent state, so it is not
	// pure.
	OpDeltaNetCore Op = 37
)

func init() {
	defineOp(OpDeltaNetCore, OpInfo{Name: "deltanet_core", Args: 7, Attrs: []string{"cache", "scale", "eps"}, Infer: inferDeltaNetCore, Pure: false,
		Comment: "rms_norm(gated_delta_rule(q, k, v, g, beta), w) ⊙ silu(z) in one step; updates the state"})
}

func inferDeltaNetCore(a []*Value, at Attrs) (DType, Shape, error) {
	dt, sh, err := inferGatedDeltaRule(a[:5], at)
	if err != nil {
		return 0, nil, err
	}
	z, w := a[5], a[6]
	if !isFloat(z) || !z.Shape.Equal(sh) {
		return 0, nil, fmt.Errorf("z must be float %v, got %v%v", sh, z.DType, z.Shape)
	}
	if !isFloat(w) || !w.Shape.Equal(Sh(sh[2])) {
		return 0, nil, fmt.Errorf("norm weight must be float [%v], got %v%v", sh[2], w.DType, w.Shape)
	}
	if e := at.Float("eps", 0); !(e > 0) {
		return 0, nil, fmt.Errorf("eps must be > 0")
	}
	return dt, sh, nil
}
