package cpu

import (
	"math"

	"github.com/inference-pio/pio/ir"
)

// Matmul tiling. Rows of W (output columns) are the unit of parallel work:
// a tile is nTile rows of W against up to mTile rows of x. Below smallM rows
// of x (decode) each dot product reads W in its stored dtype directly;
// otherwise a tile's W rows are decoded once into worker scratch and reused
// for every row of x. Both paths compute each output the same way whatever
// W's dtype, so bf16 and f16 weights give exactly the results of their f32
// upcast.
const (
	nTile  = 16
	mTile  = 64
	smallM = 4
)

// matmulK computes y = x·Wᵀ: x [..., K] -> y [..., N] with W [N, K].
type matmulK struct {
	b    *Backend
	x    tensor
	w    matrix
	y    []float32
	k, n int

	m, mTiles int // this step
}

func (k *matmulK) exec(b *Backend) error {
	k.m = b.elems(k.x.shape) / k.k
	nTiles := (k.n + nTile - 1) / nTile
	if k.m < smallM {
		k.mTiles = 0
		b.pool.do(k, nTiles, 1)
		return nil
	}
	k.mTiles = (k.m + mTile - 1) / mTile
	b.pool.do(k, nTiles*k.mTiles, 1)
	return nil
}

func (k *matmulK) run(lo, hi, w int) {
	K, N := k.k, k.n
	x, y := k.x.f32, k.y
	for tile := lo; tile < hi; tile++ {
		if k.mTiles == 0 { // few rows: dot products straight off the stored weights
			n0, n1 := tile*nTile, min((tile+1)*nTile, N)
			for m := 0; m < k.m; m++ {
				xr := x[m*K : (m+1)*K]
				yr := y[m*N : (m+1)*N]
				switch k.w.dt {
				case ir.F32:
					for n := n0; n < n1; n++ {
						yr[n] = dot(xr, k.w.f32[n*K:(n+1)*K])
					}
				case ir.BF16:
					for n := n0; n < n1; n++ {
						yr[n] = dotBF16(xr, k.w.u16[n*K:(n+1)*K])
					}
				case ir.F16:
					for n := n0; n < n1; n++ {
						yr[n] = dotF16(xr, k.w.u16[n*K:(n+1)*K])
					}
				}
			}
			continue
		}
		ni, mi := tile/k.mTiles, tile%k.mTiles
		n0, n1 := ni*nTile, min((ni+1)*nTile, N)
		m0, m1 := mi*mTile, min((mi+1)*mTile, k.m)
		var wt []float32 // rows n0..n1 of W as f32, row-major
		if k.w.dt == ir.F32 {
			wt = k.w.f32[n0*K : n1*K]
		} else {
			wt = k.b.scratch[w].w[:(n1-n0)*K]
			for n := n0; n < n1; n++ {
				k.w.rowInto(n, wt[(n-n0)*K:])
			}
		}
		for m := m0; m < m1; m++ {
			xr := x[m*K : (m+1)*K]
			yr := y[m*N+n0 : m*N+n1]
			n := 0
			for ; n+4 <= len(yr); n += 4 {
				yr[n], yr[n+1], yr[n+2], yr[n+3] = dot4(xr, wt[n*K:(n+1)*K], wt[(n+1)*K:(n+2)*K], wt[(n+2)*K:(n+3)*K], wt[(n+3)*K:(n+4)*K])
			}
			for ; n < len(yr); n++ {
				yr[n] = dot(xr, wt[n*K:(n+1)*K])
			}
		}
	}
}

// dot returns Σ a[i]·b[i] over len(a) in f32, with eight accumulators
// (element i goes to accumulator i%8) summed pairwise at the end.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		s4 += x[4] * y[4]
		s5 += x[5] * y[5]
		s6 += x[6] * y[6]
		s7 += x[7] * y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// dotBF16 is dot with b in bfloat16 bits, widened on the fly; the sum is the
// same as dot over the widened values.
func dotBF16(a []float32, b []uint16) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * bf16(y[0])
		s1 += x[1] * bf16(y[1])
		s2 += x[2] * bf16(y[2])
		s3 += x[3] * bf16(y[3])
		s4 += x[4] * bf16(y[4])
		s5 += x[5] * bf16(y[5])
		s6 += x[6] * bf16(y[6])
		s7 += x[7] * bf16(y[7])
	}
	for ; i < len(a); i++ {
		s0 += a[i] * bf16(b[i])
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// dotF16 is dot with b in IEEE half bits.
func dotF16(a []float32, b []uint16) float32 {
	t := f16Table()
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * t[y[0]]
		s1 += x[1] * t[y[1]]
		s2 += x[2] * t[y[2]]
		s3 += x[3] * t[y[3]]
		s4 += x[4] * t[y[4]]
		s5 += x[5] * t[y[5]]
		s6 += x[6] * t[y[6]]
		s7 += x[7] * t[y[7]]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * t[b[i]]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// bf16 widens bfloat16 bits to f32.
func bf16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// dot4 returns the dot products of a with four rows at once, reading a once.
// Each product uses two accumulators (even and odd elements).
func dot4(a, b0, b1, b2, b3 []float32) (float32, float32, float32, float32) {
	n := len(a)
	b0, b1, b2, b3 = b0[:n], b1[:n], b2[:n], b3[:n]
	var s0, s1, s2, s3, t0, t1, t2, t3 float32
	i := 0
	for ; i+4 <= n; i += 4 {
		x := a[i : i+4 : i+4]
		p0, p1, p2, p3 := b0[i:i+4:i+4], b1[i:i+4:i+4], b2[i:i+4:i+4], b3[i:i+4:i+4]
		s0 += x[0] * p0[0]
		t0 += x[1] * p0[1]
		s1 += x[0] * p1[0]
		t1 += x[1] * p1[1]
		s2 += x[0] * p2[0]
		t2 += x[1] * p2[1]
		s3 += x[0] * p3[0]
		t3 += x[1] * p3[1]
		s0 += x[2] * p0[2]
		t0 += x[3] * p0[3]
		s1 += x[2] * p1[2]
		t1 += x[3] * p1[3]
		s2 += x[2] * p2[2]
		t2 += x[3] * p2[3]
		s3 += x[2] * p3[2]
		t3 += x[3] * p3[3]
	}
	for ; i < n; i++ {
		x := a[i]
		s0 += x * b0[i]
		s1 += x * b1[i]
		s2 += x * b2[i]
		s3 += x * b3[i]
	}
	return s0 + t0, s1 + t1, s2 + t2, s3 + t3
}
