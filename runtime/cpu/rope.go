package cpu

import (
	"math"

	"github.com/inference-pio/pio/ir"
)

// ropeK rotates the first rd channels of every head at each token's position:
// x [T, heads, hd], pos i32 [T] -> y [T, heads, hd]; channels ≥ rd pass
// through.
//
// The angles follow transformers in f32: inv[j] = 1/θ^(2j/rd) (the exponent
// an f32 division, the power and reciprocal rounded to f32), freq = pos·inv[j]
// in f32, cos and sin of that f32 angle rounded to f32. Style "neox" pairs
// channel j with j+rd/2 (rotate-half); "interleaved" pairs 2j with 2j+1, pair
// j using inv[j], and keeps the result interleaved.
type ropeK struct {
	b     *Backend
	x     tensor
	pos   tensor
	y     []float32
	heads int
	hd    int
	inv   []float32 // [rd/2]
	neox  bool
}

// ropeInvFreq returns inv_freq exactly as transformers computes it:
// 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d)).
func ropeInvFreq(theta float64, d int) []float32 {
	inv := make([]float32, d/2)
	base := float64(float32(theta))
	for j := range inv {
		e := float32(2*j) / float32(d)
		p := float32(math.Pow(base, float64(e)))
		inv[j] = 1 / p
	}
	return inv
}

func newRoPE(b *Backend, x, pos tensor, y []float32, a ir.AttrReader) *ropeK {
	rd := int(a.Int("rotary_dims"))
	return &ropeK{
		b: b, x: x, pos: pos, y: y,
		heads: int(x.shape[1]), hd: int(x.shape[2]),
		inv:  ropeInvFreq(a.Float("theta"), rd),
		neox: a.String("style") == "neox",
	}
}

func (k *ropeK) exec(b *Backend) error {
	b.pool.do(k, b.t, b.pool.grainFor(b.t, 1))
	return nil
}

func (k *ropeK) run(lo, hi, w int) {
	half := len(k.inv)
	rd := 2 * half
	sc := &k.b.scratch[w]
	cos, sin := sc.cos[:half], sc.sin[:half]
	row := k.heads * k.hd
	for t := lo; t < hi; t++ {
		p := float32(k.pos.i32[t])
		for j, f := range k.inv {
			a := float64(p * f)
			cos[j], sin[j] = float32(math.Cos(a)), float32(math.Sin(a))
		}
		for h := 0; h < k.heads; h++ {
			base := t*row + h*k.hd
			x, y := k.x.f32[base:base+k.hd], k.y[base:base+k.hd]
			if k.neox {
				for j := 0; j < half; j++ {
					x1, x2 := x[j], x[j+half]
					c, s := cos[j], sin[j]
					y[j] = float32(x1*c) - float32(x2*s)
					y[j+half] = float32(x2*c) + float32(x1*s)
				}
			} else {
				for j := 0; j < half; j++ {
					x1, x2 := x[2*j], x[2*j+1]
					c, s := cos[j], sin[j]
					y[2*j] = float32(x1*c) - float32(x2*s)
					y[2*j+1] = float32(x2*c) + float32(x1*s)
				}
			}
			if &x[0] != &y[0] {
				copy(y[rd:], x[rd:])
			}
		}
	}
}
