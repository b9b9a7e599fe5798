package cuda

import (
	"fmt"
	"math"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// ropeInvFreq is inv_freq as transformers computes it in f32 (the same
// rounding as runtime/cpu).
func ropeInvFreq(theta float64, d int) []float32 {
	inv := make([]float32, d/2)
	base := float64(float32(theta))
	for j := range inv {
		e := float32(2*j) / float32(d)
		inv[j] = 1 / float32(math.Pow(base, float64(e)))
	}
	return inv
}

// invTable is the C initialiser of a RoPE inverse-frequency table.
func invTable(a ir.AttrReader) string {
	var inv []string
	for _, f := range ropeInvFreq(a.Float("theta"), int(a.Int("rotary_dims"))) {
		inv = append(inv, cf(float64(f)))
	}
	return strings.Join(inv, ", ")
}

func (g *gen) rope(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	if xdt != ir.F32 {
		return fmt.Errorf("x dtype %v: want f32", xdt)
	}
	heads, hd := int64(xsh[1]), int64(xsh[2])
	rd := s.Attr().Int("rotary_dims")
	half := rd / 2
	neox := s.Attr().String("style") == "neox"
	i1, i2 := "2 * j", "2 * j + 1"
	style := "interleaved"
	if neox {
		i1, i2, style = "j", fmt.Sprintf("j + %d", half), "neox"
	}
	pass := ""
	if rd < hd {
		pass = fmt.Sprintf(`  if (x != y) {
    for (int e = threadIdx.x; e < %[1]d * %[2]d; e += blockDim.x) {
      const long i = (t * %[1]d + e / %[2]d) * %[3]dL + %[4]d + e %% %[2]d;
      y[i] = x[i];
    }
  }
`, heads, hd-rd, hd, rd)
	}
	name := g.kernel("rope", fmt.Sprintf(`// rope (%[6]s) of the first %[3]d of %[2]d channels of %[1]d heads at positions pos; the rest pass through.
__constant__ float KNAME_inv[%[4]d] = {%[5]s};
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ x, const int* __restrict__ pos, float* __restrict__ y, int T, int S) {
  const long t = blockIdx.x;
  if (t >= T) return;
  const float p = (float)pos[t];
  for (int e = threadIdx.x; e < %[1]d * %[4]d; e += blockDim.x) {
    const int h = e / %[4]d, j = e %% %[4]d;
    const float a = __fmul_rn(p, KNAME_inv[j]);
    double sd, cd;
    sincos((double)a, &sd, &cd);
    const float sn = (float)sd, cs = (float)cd;
    const long base = (t * %[1]d + h) * %[2]dL;
    const float x1 = x[base + %[7]s], x2 = x[base + %[8]s];
    y[base + %[7]s] = __fmul_rn(x1, cs) - __fmul_rn(x2, sn);
    y[base + %[8]s] = __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
  }
%[9]s}
`, heads, hd, rd, half, invTable(s.Attr()), style, i1, i2, pass))
	g.launch(Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 128, Grid: [3]Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}
