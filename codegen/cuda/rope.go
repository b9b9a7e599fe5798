package cuda

import (
	"fmt"
	"math"
	"strings"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
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

// ropeHoles fill rope.
type ropeHoles struct {
	Heads, HD int64  // heads, head dim
	RD, Half  int64  // rotary channels, half of them
	Inv       string // C initialiser of the inverse frequencies
	NeoX      bool   // rotate halves, else interleaved pairs
}

// PassCh is the channels of a head that pass through.
func (h ropeHoles) PassCh() int64 { return h.HD - h.RD }

// ropeTmpl rotates the first RD channels of each head, one block per token;
// the rest pass through.
var ropeTmpl = kernelTemplate("rope", `// rope ({{if .NeoX}}neox{{else}}interleaved{{end}}) of the first {{.RD}} of {{.HD}} channels of {{.Heads}} heads at positions pos; the rest pass through.
__constant__ float KNAME_inv[{{.Half}}] = { {{- .Inv -}} };
extern "C" __global__ void __launch_bounds__(128) KNAME(const float* __restrict__ x, const int* __restrict__ pos, float* __restrict__ y, int T, int S) {
  const long t = blockIdx.x;
  if (t >= T) return;
  const float p = (float)pos[t];
  for (int e = threadIdx.x; e < {{.Heads}} * {{.Half}}; e += blockDim.x) {
    const int h = e / {{.Half}}, j = e % {{.Half}};
    const float a = __fmul_rn(p, KNAME_inv[j]);
    double sd, cd;
    sincos((double)a, &sd, &cd);
    const float sn = (float)sd, cs = (float)cd;
    const long base = (t * {{.Heads}} + h) * {{.HD}}L;
{{- if .NeoX}}
    const float x1 = x[base + j], x2 = x[base + j + {{.Half}}];
    y[base + j] = __fmul_rn(x1, cs) - __fmul_rn(x2, sn);
    y[base + j + {{.Half}}] = __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
{{- else}}
    const float x1 = x[base + 2 * j], x2 = x[base + 2 * j + 1];
    y[base + 2 * j] = __fmul_rn(x1, cs) - __fmul_rn(x2, sn);
    y[base + 2 * j + 1] = __fmul_rn(x2, cs) + __fmul_rn(x1, sn);
{{- end}}
  }
{{- if lt .RD .HD}}
  if (x != y) {
    for (int e = threadIdx.x; e < {{.Heads}} * {{.PassCh}}; e += blockDim.x) {
      const long i = (t * {{.Heads}} + e / {{.PassCh}}) * {{.HD}}L + {{.RD}} + e % {{.PassCh}};
      y[i] = x[i];
    }
  }
{{- end}}
}
`)

func (g *gen) rope(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	if xdt != ir.F32 {
		return fmt.Errorf("x dtype %v: want f32", xdt)
	}
	heads, hd := int64(xsh[1]), int64(xsh[2])
	rd := s.Attr().Int("rotary_dims")
	half := rd / 2
	neox := s.Attr().String("style") == "neox"
	name, err := g.emit("rope", ropeTmpl, ropeHoles{Heads: heads, HD: hd, RD: rd, Half: half, Inv: invTable(s.Attr()), NeoX: neox})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 128, Grid: [3]abi.Expr{{T: 1}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}
