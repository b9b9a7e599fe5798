package cpu

import (
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// Matmul tiling. Rows of W (output columns) are the unit of parallel work:
// a tile is nTile rows of W against up to mTile rows of x. Below smallM rows
// of x (decode) each dot product reads W in its stored form directly
// (kern.Dot, kern.DotBF16, kern.DotQ8, ...); otherwise a tile's W rows are
// decoded once into worker scratch as f32 and multiplied with the 2×4 f32
// micro-kernel (kern.Gemm2x4) for every row pair of x. Both paths compute
// each output the same way whatever W's float dtype, so bf16 and f16 weights
// give exactly the results of their f32 upcast.
const (
	nTile  = 16
	mTile  = 64
	smallM = 4
)

// matmulK computes y = x·Wᵀ: x [..., K] -> y [..., N] with W [N, K], W in a
// float dtype (w) or group-quantized (q, set by matmul_q).
type matmulK struct {
	b    *Backend
	x    tensor
	w    matrix
	q    *qmatrix
	y    []float32
	k, n int

	m, mTiles int // this step
}

func (k *matmulK) exec(b *Backend) error {
	k.m = b.elems(k.x.shape) / k.k
	nTiles := (k.n + nTile - 1) / nTile
	if k.m < smallM {
		// Decode streams W once: hand each worker long contiguous runs of
		// tiles (about 4 per thread) so hardware prefetchers see long
		// sequential streams, not 16-row hops shared between cores.
		k.mTiles = 0
		b.pool.do(k, nTiles, b.pool.grainFor(nTiles, 1))
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
				if k.q != nil {
					k.q.dots(xr, yr, n0, n1)
					continue
				}
				switch k.w.dt {
				case ir.F32:
					for n := n0; n < n1; n++ {
						yr[n] = kern.Dot(xr, k.w.f32[n*K:(n+1)*K])
					}
				case ir.BF16:
					for n := n0; n < n1; n++ {
						yr[n] = kern.DotBF16(xr, k.w.u16[n*K:(n+1)*K])
					}
				case ir.F16: // rare: decode each row, so results match the f32 upcast
					row := k.b.scratch[w].w[:K]
					for n := n0; n < n1; n++ {
						k.w.rowInto(n, row)
						yr[n] = kern.Dot(xr, row)
					}
				}
			}
			continue
		}
		ni, mi := tile/k.mTiles, tile%k.mTiles
		n0, n1 := ni*nTile, min((ni+1)*nTile, N)
		m0, m1 := mi*mTile, min((mi+1)*mTile, k.m)
		var wt []float32 // rows n0..n1 of W as f32, row-major
		switch {
		case k.q != nil:
			wt = k.b.scratch[w].w[:(n1-n0)*K]
			for n := n0; n < n1; n++ {
				k.q.rowInto(n, wt[(n-n0)*K:(n-n0+1)*K])
			}
		case k.w.dt == ir.F32:
			wt = k.w.f32[n0*K : n1*K]
		case k.w.dt == ir.BF16:
			wt = k.b.scratch[w].w[:(n1-n0)*K]
			kern.DecodeBF16(wt, k.w.u16[n0*K:n1*K])
		default:
			wt = k.b.scratch[w].w[:(n1-n0)*K]
			for n := n0; n < n1; n++ {
				k.w.rowInto(n, wt[(n-n0)*K:])
			}
		}
		gemmTile(x, y, wt, K, N, m0, m1, n0, n1)
	}
}

// gemmTile computes y[m, n] = x[m]·wt[n-n0] for m in [m0, m1), n in
// [n0, n1): x is [M, K], y is [M, N], wt holds rows n0..n1 of W as f32.
// Row pairs of x meet quads of W rows in the 2×4 micro-kernel; the W quad
// stays in L1 while x rows stream past it.
func gemmTile(x, y, wt []float32, K, N, m0, m1, n0, n1 int) {
	var out [8]float32
	n := n0
	for ; n+4 <= n1; n += 4 {
		w4 := wt[(n-n0)*K : (n-n0+4)*K]
		m := m0
		for ; m+2 <= m1; m += 2 {
			kern.Gemm2x4(x[m*K:(m+2)*K], K, w4, K, K, &out)
			copy(y[m*N+n:m*N+n+4], out[:4])
			copy(y[(m+1)*N+n:(m+1)*N+n+4], out[4:])
		}
		if m < m1 {
			xr := x[m*K : (m+1)*K]
			for j := 0; j < 4; j++ {
				y[m*N+n+j] = kern.Dot(xr, w4[j*K:(j+1)*K])
			}
		}
	}
	for ; n < n1; n++ {
		wr := wt[(n-n0)*K : (n-n0+1)*K]
		for m := m0; m < m1; m++ {
			y[m*N+n] = kern.Dot(x[m*K:(m+1)*K], wr)
		}
	}
}

// dot returns Σ a[i]·b[i] over len(a) in f32 (kern.Dot).
func dot(a, b []float32) float32 { return kern.Dot(a, b) }

// dotBF16 is dot with b in bfloat16 bits, widened on the fly; the sum is the
// same as dot over the widened values.
func dotBF16(a []float32, b []uint16) float32 { return kern.DotBF16(a, b) }

// dotF16 is dot with b in IEEE half bits (portable: f16 weights are rare).
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
func bf16(h uint16) float32 { return kern.BF16(h) }

// dot4 returns the dot products of a with four rows.
func dot4(a, b0, b1, b2, b3 []float32) (float32, float32, float32, float32) {
	return kern.Dot(a, b0), kern.Dot(a, b1), kern.Dot(a, b2), kern.Dot(a, b3)
}
