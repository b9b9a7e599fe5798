package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
)

// Templates of the fused DeltaNet ops (ir/op_fused_deltanet.go).
func init() {
	templates[ir.OpDeltaNetCore] = (*gen).deltaNetCore
}

// deltaNetCore is deltanet_core: the gated_delta_rule kernels of
// deltanet.go (recurrent for decode, chunked for prefill) over args 0–4
// write the rule's output into the step's output, then the gated-norm
// epilogue rewrites it in place, one block per (token, value head) row:
// y = rms_norm(y, w) ⊙ silu(z), computed as rms_norm and silu compute it.
func (g *gen) deltaNetCore(step int, s ir.Step) error {
	rule := s
	rule.Args = s.Args[:5]
	if err := g.gatedDeltaRule(step, rule); err != nil {
		return err
	}
	zdt, zsh := g.operand(s.Args[5])
	wdt, _ := g.operand(s.Args[6])
	zt, err := ctype(zdt)
	if err != nil {
		return fmt.Errorf("z: %w", err)
	}
	wt, err := ctype(wdt)
	if err != nil {
		return fmt.Errorf("norm weight: %w", err)
	}
	d := int64(zsh.Last())
	grid, _, err := rows(zsh, d)
	if err != nil {
		return err
	}
	block := 128
	if d > 1024 {
		block = 256
	}
	name := g.kernel("deltanet_gated_norm", fmt.Sprintf(`// deltanet_core epilogue over rows of %[1]d, in place: y = y / sqrt(mean(y²) + eps) · w ⊙ silu(z).
extern "C" __global__ void __launch_bounds__(%[2]d) KNAME(const %[3]s* __restrict__ z, const %[4]s* __restrict__ w, float* __restrict__ y, int T, int S) {
  __shared__ float red[32];
  const long row = blockIdx.x;  // the grid has exactly one block per row
  const %[3]s* zr = z + row * %[1]dL;
  float* yr = y + row * %[1]dL;
  float ss = 0.f;
  for (int c = threadIdx.x; c < %[1]d; c += %[2]d) {
    const float v = yr[c];
    ss = fmaf(v, v, ss);
  }
  ss = pio_block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / %[1]d.0f + %[5]s);
  for (int c = threadIdx.x; c < %[1]d; c += %[2]d) {
    const float zv = pio_f32(zr[c]);
    yr[c] = __fmul_rn(__fmul_rn(__fmul_rn(yr[c], inv), pio_f32(w[c])), zv / (1.0f + expf(-zv)));
  }
}
`, d, block, zt, wt, cf(s.Attrs.Float("eps", 0))))
	g.launch(Launch{Step: step, Kernel: name, Block: block, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}},
		Params: []Param{{Kind: PArg, Index: 5}, {Kind: PArg, Index: 6}, {Kind: POut}, {Kind: PT}, {Kind: PS}}})
	return nil
}
