package cuda

import (
	"strings"

	"github.com/inference-pio/pio/ir"
)

// Sampling candidates: a sampled token is drawn from the tokens within 30
// nats of the best (runtime/sample), usually a small part of a 150k-token
// vocabulary, so the runtime downloads those tokens instead of every
// logit (runtime.Candidater).

// CandidatesPerThread is the number of consecutive logits one thread of the
// candidates kernel reads per tile (a tile is 256 threads' worth).
const CandidatesPerThread = 8

// candidates adds the sampling-candidates helper for a "logits" output of
// [S, V]:
//
//	candidates(x *float, d *float, out *uint32, cnt *int32, mx *float, rows int32, cap int32)
//
// one block of 256 threads per row r. It finds the row's maximum m (NaN
// never counts) and writes, in increasing token order, (id, float bits) of
// each token whose logit v has v - m >= -d[r] (in f32) to out[2·(r·cap+k)]
// for k < cap; cnt[r] is how many there are (more than cap: the list is
// cut), or -1 when the row holds a NaN or no finite maximum, and mx[r] is
// m. The order comes from a block-wide prefix scan of each tile's counts
// (a stable compaction), so equal logits keep the lower id first.
func (g *gen) candidates() error {
	for _, o := range g.p.Outputs {
		b := g.p.Buffers[o.Buffer]
		if o.Name != "logits" || len(b.Shape) != 2 || b.Shape[1].Symbolic() || b.DType != ir.F32 {
			continue
		}
		text, err := candidatesText(int64(b.Shape[1]))
		if err != nil {
			return err
		}
		g.m.Candidates = g.kernel("candidates", text)
	}
	return nil
}

// candidatesText is the candidates kernel over rows of v logits.
func candidatesText(v int64) (string, error) {
	var b strings.Builder
	err := candidatesTmpl.Execute(&b, struct{ V, PerThread int64 }{v, CandidatesPerThread})
	return b.String(), err
}

// candidatesTmpl: V is the row length, PerThread the logits per thread and
// tile.
var candidatesTmpl = kernelTemplate("candidates", `// sampling candidates of each row of {{.V}} logits: the tokens within d[r] of the row's maximum, in index order.
extern "C" __global__ void __launch_bounds__(256) KNAME(const float* __restrict__ x, const float* __restrict__ d, unsigned* __restrict__ out, int* __restrict__ cnt, float* __restrict__ mx, int rows, int cap) {
  __shared__ float wmax[8];
  __shared__ int wnan[8];
  __shared__ unsigned wsum[8];
  const long r = blockIdx.x;
  if (r >= rows) return;
  const float* xr = x + r * {{.V}}L;
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  float best = -INFINITY;
  int nan = 0;
  for (int c = tid; c < {{.V}}; c += 256) {
    const float v = xr[c];
    if (v != v) nan = 1;
    else if (v > best) best = v;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, o));
    nan |= __shfl_xor_sync(0xffffffffu, nan, o);
  }
  if (lane == 0) { wmax[w] = best; wnan[w] = nan; }
  __syncthreads();
  for (int k = 0; k < 8; k++) { best = fmaxf(best, wmax[k]); nan |= wnan[k]; }
  if (nan || !(best > -INFINITY && best < INFINITY)) {
    if (tid == 0) { cnt[r] = -1; mx[r] = nan ? NAN : best; }
    return;
  }
  const float lo = -d[r];
  unsigned* orow = out + 2 * r * (long)cap;
  unsigned total = 0;  // candidates in earlier tiles
  for (int t0 = 0; t0 < {{.V}}; t0 += 256 * {{.PerThread}}) {
    const int c0 = t0 + tid * {{.PerThread}};
    float v[{{.PerThread}}];
    unsigned n = 0;
#pragma unroll
    for (int j = 0; j < {{.PerThread}}; j++) {
      v[j] = c0 + j < {{.V}} ? xr[c0 + j] : NAN;
      n += v[j] - best >= lo;  // false for NaN
    }
    unsigned s = n;  // inclusive scan over the warp
#pragma unroll
    for (int k = 1; k < 32; k <<= 1) {
      const unsigned y = __shfl_sync(0xffffffffu, s, (lane - k) & 31);
      if (lane >= k) s += y;
    }
    if (lane == 31) wsum[w] = s;
    __syncthreads();
    unsigned at = total + s - n, tile = 0;
    for (int k = 0; k < 8; k++) {
      if (k < w) at += wsum[k];
      tile += wsum[k];
    }
    if (n) {
#pragma unroll
      for (int j = 0; j < {{.PerThread}}; j++) {
        if (v[j] - best >= lo) {
          if (at < (unsigned)cap) { orow[2 * at] = c0 + j; orow[2 * at + 1] = __float_as_uint(v[j]); }
          at++;
        }
      }
    }
    total += tile;
    __syncthreads();  // wsum is rewritten by the next tile
  }
  if (tid == 0) { cnt[r] = (int)total; mx[r] = best; }
}
`)
