package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
)

// Templates of the fused DeltaNet ops (ir/op_fused_deltanet.go).
func init() {
	templates[ir.OpDeltaNetCore] = (*gen).deltaNetCore
	templates[ir.OpDeltaNetPrep] = (*gen).deltaNetPrep
}

// deltaNetPrep is deltanet_prep: deltanet.go's causal conv kernel with its
// input channel c gathered from the grouped qkvz block of the projected row
// and its output rows of C + 2·Hv, then one gates kernel writing the decay
// (as deltanet_decay) and sigmoid(b) into the last 2·Hv of each row.
func (g *gen) deltaNetPrep(step int, s ir.Step) error {
	ts, err := g.ctypes(s)
	if err != nil {
		return err
	}
	_, xsh := g.operand(s.Args[0])
	_, wsh := g.operand(s.Args[1])
	at := s.Attr()
	hk, hv, dk, dv, c := ir.DeltaNetPrepLayout(at)
	if hk <= 0 {
		return fmt.Errorf("deltanet_prep without heads and dims")
	}
	k := int64(wsh.Last())
	ci := at.Int("cache")
	if err := g.stateCache(ci, ir.Sh(ir.Dim(c), ir.Dim(k-1))); err != nil {
		return err
	}
	width, row, r := int64(xsh[1]), int64(c+2*hv), hv/hk
	grp := 2*dk + 2*r*dv
	name := g.kernel("deltanet_prep_conv", fmt.Sprintf(`// deltanet_prep conv: silu(conv1d_causal) over C=%[3]d channels q ‖ k ‖ v gathered from the grouped qkvz block (at %[9]d, groups of %[10]d) of rows of %[11]d, K=%[4]d, per sequence run; output rows of %[12]d; the conv state [slot, C, K−1] gets the run's last K−1 inputs.
extern "C" __global__ void __launch_bounds__(128) KNAME(const %[1]s* __restrict__ x, const %[2]s* __restrict__ w, const %[13]s* __restrict__ alog, const %[14]s* __restrict__ dtb, float* __restrict__ y, int T, int S, %[5]s) {
  const int seq = blockIdx.x;
%[6]s  const int c = blockIdx.y * 128 + threadIdx.x;
  if (c >= %[3]d) return;
  constexpr int HKDK = %[15]d, DK = %[16]d, RDV = %[17]d;
  const int col = %[9]d + (c < HKDK ? (c / DK) * %[10]d + c %% DK
                        : c < 2 * HKDK ? ((c - HKDK) / DK) * %[10]d + DK + (c - HKDK) %% DK
                                       : ((c - 2 * HKDK) / RDV) * %[10]d + 2 * DK + (c - 2 * HKDK) %% RDV);
  float* st = state + ((long)slots[seq] * %[3]d + c) * %[7]d;
  float h[%[7]d], wk[%[4]d];
#pragma unroll
  for (int m = 0; m < %[7]d; m++) h[m] = fresh ? 0.f : st[m];
#pragma unroll
  for (int j = 0; j < %[4]d; j++) wk[j] = pio_f32(w[(long)c * %[4]d + j]);
  for (int i = 0; i < n; i++) {
    const long t = t0 + i;
    const float xi = pio_f32(x[t * %[11]dL + col]);
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < %[7]d; j++) acc = __fadd_rn(acc, __fmul_rn(wk[j], h[j]));
    acc = __fadd_rn(acc, __fmul_rn(wk[%[7]d], xi));
    acc = acc / (1.0f + expf(-acc));
    y[t * %[12]dL + c] = acc;
#pragma unroll
    for (int m = 0; m + 1 < %[7]d; m++) h[m] = h[m + 1];
    h[%[7]d - 1] = xi;
  }
#pragma unroll
  for (int m = 0; m < %[7]d; m++) st[m] = h[m];
}
`, ts[0], ts[1], c, k, stateDecl, seqRunC, k-1, 0, at.Int("qkvz"), grp, width, row, ts[2], ts[3], hk*dk, dk, r*dv))
	g.launch(Launch{Step: step, Kernel: name, Params: stateParams(4, int(ci)), Block: 128,
		Grid: [3]Expr{{T: 1}, {Fixed: int64((c + 127) / 128)}, {Fixed: 1}}})
	gates := g.kernel("deltanet_prep_gates", fmt.Sprintf(`// deltanet_prep gates over [T, %[5]d] value heads: y[t, C+h] = −exp(A_log)·softplus(a + dt_bias) (softplus(x) = x above 20), y[t, C+Hv+h] = sigmoid(b), a and b read from the grouped ba block (at %[6]d, groups of 2·%[7]d) of rows of %[8]d.
extern "C" __global__ void __launch_bounds__(256) KNAME(const %[1]s* __restrict__ x, const %[2]s* __restrict__ w, const %[3]s* __restrict__ alog, const %[4]s* __restrict__ dtb, float* __restrict__ y, int T, int S) {
  const long n = (long)T * %[5]d;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const long t = i / %[5]d;
    const int h = (int)(i %% %[5]d);
    const %[1]s* xr = x + t * %[8]dL + %[6]d + (h / %[7]d) * 2 * %[7]d + h %% %[7]d;
    const float v = __fadd_rn(pio_f32(xr[%[7]d]), pio_f32(dtb[h]));
    const float sp = v > 20.f ? v : log1pf(expf(v));
    y[t * %[9]dL + %[10]d + h] = -expf(pio_f32(alog[h])) * sp;
    y[t * %[9]dL + %[10]d + %[5]d + h] = 1.0f / (1.0f + expf(-pio_f32(xr[0])));
  }
}
`, ts[0], ts[1], ts[2], ts[3], hv, at.Int("ba"), r, width, row, c))
	g.launch(Launch{Step: step, Kernel: gates, Params: stdParams(4), Block: 256,
		Grid: [3]Expr{{T: int64(hv), Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
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
	_, qsh := g.operand(s.Args[0])
	_, vsh := g.operand(s.Args[2])
	hk, dk, hv, d := int64(qsh[1]), int64(qsh[2]), int64(vsh[1]), int64(vsh[2])
	grid, _, err := rows(vsh, d)
	if err != nil {
		return err
	}
	// z's row: contiguous [T, Hv, dv], or in place in the projected row (zrow).
	zrow := fmt.Sprintf("row * %dL", d)
	if off := s.Attr().Int("zrow"); off >= 0 {
		r := hv / hk
		zrow = fmt.Sprintf("(row / %[1]d) * %[2]dL + %[3]d + (row %% %[1]d / %[4]d) * %[5]d + %[6]d + (row %% %[1]d %% %[4]d) * %[7]d",
			hv, int64(zsh[1]), off, r, 2*dk+2*r*d, 2*dk+r*d, d)
	}
	block := 128
	if d > 1024 {
		block = 256
	}
	name := g.kernel("deltanet_gated_norm", fmt.Sprintf(`// deltanet_core epilogue over rows of %[1]d, in place: y = y / sqrt(mean(y²) + eps) · w ⊙ silu(z).
extern "C" __global__ void __launch_bounds__(%[2]d) KNAME(const %[3]s* __restrict__ z, const %[4]s* __restrict__ w, float* __restrict__ y, int T, int S) {
  __shared__ float red[32];
  const long row = blockIdx.x;  // the grid has exactly one block per row
  const %[3]s* zr = z + %[6]s;
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
`, d, block, zt, wt, cf(s.Attr().Float("eps")), zrow))
	g.launch(Launch{Step: step, Kernel: name, Block: block, Grid: [3]Expr{grid, {Fixed: 1}, {Fixed: 1}},
		Params: []Param{{Kind: PArg, Index: 5}, {Kind: PArg, Index: 6}, {Kind: POut}, {Kind: PT}, {Kind: PS}}})
	return nil
}
