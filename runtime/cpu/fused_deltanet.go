package cpu

import (
	"math"

	"github.com/inference-pio/pio/ir"
)

// Kernels of the fused DeltaNet ops (ir/op_fused_deltanet.go). They reuse
// the unfused kernels' code, so a fused engine matches an unfused one.
func init() {
	builders[ir.OpDeltaNetCore] = buildDeltaNetCore
}

// deltaNetCoreK is deltanet_core: the gated delta rule (deltaRuleK, into
// y), then per value-head row y = rms_norm(y, w) ⊙ silu(z), computed as
// rms_norm, silu and mul compute it.
type deltaNetCoreK struct {
	rule *deltaRuleK
	z    tensor
	w    []float32
	y    []float32
	eps  float32
	d    int
}

func buildDeltaNetCore(b *Backend, s ir.Step, y tensor) (kernel, error) {
	rs := s
	rs.Args = s.Args[:5]
	rk, err := buildGatedDeltaRule(b, rs, y)
	if err != nil {
		return nil, err
	}
	z := b.operand(s.Args[5])
	return &deltaNetCoreK{rule: rk.(*deltaRuleK), z: z, w: b.operand(s.Args[6]).f32, y: y.f32,
		eps: float32(s.Attrs.Float("eps", 0)), d: int(z.shape.Last())}, nil
}

func (k *deltaNetCoreK) exec(b *Backend) error {
	if err := k.rule.exec(b); err != nil {
		return err
	}
	rows := b.elems(k.z.shape) / k.d
	b.pool.do(k, rows, b.pool.grainFor(rows, max(1, 4096/k.d)))
	return nil
}

func (k *deltaNetCoreK) run(lo, hi, _ int) {
	d := k.d
	w := k.w[:d]
	for r := lo; r < hi; r++ {
		y, z := k.y[r*d:(r+1)*d], k.z.f32[r*d:(r+1)*d]
		var ss float64
		for _, v := range y {
			ss += float64(v) * float64(v)
		}
		mean := float32(ss / float64(d))
		inv := float32(1 / math.Sqrt(float64(mean+k.eps)))
		for i, v := range y {
			x := float64(z[i])
			y[i] = (float32(v*inv) * w[i]) * float32(x/(1+math.Exp(-x)))
		}
	}
}
