package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// Templates of the fused DeltaNet ops (ir/op_fused_deltanet.go).
func init() {
	templates[ir.OpDeltaNetCore] = (*gen).deltaNetCore
	templates[ir.OpDeltaNetPrep] = (*gen).deltaNetPrep
}

// deltaNetPrepConvHoles fill deltanet_prep_conv.
type deltaNetPrepConvHoles struct {
	XT, WT, LT, DT string // x, conv weight, A_log and dt_bias element types
	C              int
	K, KM1         int64 // channels, taps, the state's inputs per channel
	QKVZ           int64
	Group          int   // the grouped qkvz block's offset in a row, the size of a group
	Width, Row     int64 // input and output row lengths
	HKDK, DK, RDV  int   // q (and k) channels, key head dim, a group's v channels
}

// deltaNetPrepConvTmpl is conv1d_causal (silu) over channels gathered from
// the grouped qkvz block: one thread per channel, one block per (sequence,
// 128 channels).
var deltaNetPrepConvTmpl = kernelTemplate("deltanet_prep_conv", `// deltanet_prep conv: silu(conv1d_causal) over C={{.C}} channels q ‖ k ‖ v gathered from the grouped qkvz block (at {{.QKVZ}}, groups of {{.Group}}) of rows of {{.Width}}, K={{.K}}, per sequence run; output rows of {{.Row}}; the conv state [slot, C, K−1] gets the run's last K−1 inputs.
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.XT}}* __restrict__ x, const {{.WT}}* __restrict__ w, const {{.LT}}* __restrict__ alog, const {{.DT}}* __restrict__ dtb, float* __restrict__ y, int T, int S, `+stateDecl+`) {
  const int seq = blockIdx.x;
{{template "seq_run"}}
  const int c = blockIdx.y * 128 + threadIdx.x;
  if (c >= {{.C}}) return;
  constexpr int HKDK = {{.HKDK}}, DK = {{.DK}}, RDV = {{.RDV}};
  const int col = {{.QKVZ}} + (c < HKDK ? (c / DK) * {{.Group}} + c % DK
                        : c < 2 * HKDK ? ((c - HKDK) / DK) * {{.Group}} + DK + (c - HKDK) % DK
                                       : ((c - 2 * HKDK) / RDV) * {{.Group}} + 2 * DK + (c - 2 * HKDK) % RDV);
{{template "conv1d_state" .}}
}
`)

// XRow and YRow are the row lengths of x and y, XCol x's column of
// channel c; the conv's output is always silu'd.
func (h deltaNetPrepConvHoles) XRow() int64  { return h.Width }
func (h deltaNetPrepConvHoles) YRow() int64  { return h.Row }
func (h deltaNetPrepConvHoles) XCol() string { return "col" }
func (h deltaNetPrepConvHoles) SiLU() bool   { return true }

// deltaNetPrepGatesHoles fill deltanet_prep_gates.
type deltaNetPrepGatesHoles struct {
	XT, WT, LT, DT string // x, conv weight, A_log and dt_bias element types
	HV             int    // value heads
	BA             int64  // the grouped ba block's offset in a row
	R              int    // value heads per key head
	Width, Row     int64  // input and output row lengths
	C              int    // the conv's channels, where the gates start in an output row
}

// deltaNetPrepGatesTmpl writes the decay and sigmoid(b), one thread per
// (token, value head).
var deltaNetPrepGatesTmpl = kernelTemplate("deltanet_prep_gates", `// deltanet_prep gates over [T, {{.HV}}] value heads: y[t, C+h] = −exp(A_log)·softplus(a + dt_bias) (softplus(x) = x above 20), y[t, C+Hv+h] = sigmoid(b), a and b read from the grouped ba block (at {{.BA}}, groups of 2·{{.R}}) of rows of {{.Width}}.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.XT}}* __restrict__ x, const {{.WT}}* __restrict__ w, const {{.LT}}* __restrict__ alog, const {{.DT}}* __restrict__ dtb, float* __restrict__ y, int T, int S) {
  const long n = (long)T * {{.HV}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const long t = i / {{.HV}};
    const int h = (int)(i % {{.HV}});
    const {{.XT}}* xr = x + t * {{.Width}}L + {{.BA}} + (h / {{.R}}) * 2 * {{.R}} + h % {{.R}};
    const float v = __fadd_rn(pio_f32(xr[{{.R}}]), pio_f32(dtb[h]));
    const float sp = v > 20.f ? v : log1pf(expf(v));
    y[t * {{.Row}}L + {{.C}} + h] = -expf(pio_f32(alog[h])) * sp;
    y[t * {{.Row}}L + {{.C}} + {{.HV}} + h] = 1.0f / (1.0f + expf(-pio_f32(xr[0])));
  }
}
`)

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
	name, err := g.emit("deltanet_prep_conv", deltaNetPrepConvTmpl, deltaNetPrepConvHoles{XT: ts[0], WT: ts[1], LT: ts[2], DT: ts[3], C: c, K: k, KM1: k - 1, QKVZ: at.Int("qkvz"), Group: grp, Width: width, Row: row, HKDK: hk * dk, DK: dk, RDV: r * dv})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stateParams(4, int(ci)), Block: 128,
		Grid: [3]abi.Expr{{T: 1}, {Fixed: int64((c + 127) / 128)}, {Fixed: 1}}})
	gates, err := g.emit("deltanet_prep_gates", deltaNetPrepGatesTmpl, deltaNetPrepGatesHoles{XT: ts[0], WT: ts[1], LT: ts[2], DT: ts[3], HV: hv, BA: at.Int("ba"), R: r, Width: width, Row: row, C: c})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: gates, Params: stdParams(4), Block: 256,
		Grid: [3]abi.Expr{{T: int64(hv), Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// deltaNetGatedNormHoles fill deltanet_gated_norm.
type deltaNetGatedNormHoles struct {
	D      int64      // row length
	Block  int        // threads
	ZT, WT string     // z and norm weight element types
	Eps    string     // C literal
	ZRow   *zRowHoles // z in place in the projected rows; nil: z is contiguous [T, Hv, D]
}

// zRowHoles place z in the projected rows: value head h of a token is in
// key head group h / R, whose block of Group columns (from Off) holds z's
// R heads of D from At.
type zRowHoles struct {
	HV, Width, Off, R, Group, At, D int64
}

// deltaNetGatedNormTmpl is the rms_norm ⊙ silu(z) epilogue, one block per
// (token, value head) row.
var deltaNetGatedNormTmpl = kernelTemplate("deltanet_gated_norm", `// deltanet_core epilogue over rows of {{.D}}, in place: y = y / sqrt(mean(y²) + eps) · w ⊙ silu(z).
extern "C" __global__ void __launch_bounds__({{.Block}}) KNAME(const {{.ZT}}* __restrict__ z, const {{.WT}}* __restrict__ w, float* __restrict__ y, int T, int S) {
  __shared__ float red[32];
  const long row = blockIdx.x;  // the grid has exactly one block per row
  const {{.ZT}}* zr = z + {{with .ZRow}}(row / {{.HV}}) * {{.Width}}L + {{.Off}} + (row % {{.HV}} / {{.R}}) * {{.Group}} + {{.At}} + (row % {{.HV}} % {{.R}}) * {{.D}}{{else}}row * {{.D}}L{{end}};
  float* yr = y + row * {{.D}}L;
  float ss = 0.f;
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}}) {
    const float v = yr[c];
    ss = fmaf(v, v, ss);
  }
  ss = pio_block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / {{.D}}.0f + {{.Eps}});
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}}) {
    const float zv = pio_f32(zr[c]);
    yr[c] = __fmul_rn(__fmul_rn(__fmul_rn(yr[c], inv), pio_f32(w[c])), zv / (1.0f + expf(-zv)));
  }
}
`)

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
	var zrow *zRowHoles
	if off := s.Attr().Int("zrow"); off >= 0 {
		r := hv / hk
		zrow = &zRowHoles{HV: hv, Width: int64(zsh[1]), Off: off, R: r, Group: 2*dk + 2*r*d, At: 2*dk + r*d, D: d}
	}
	block := 128
	if d > 1024 {
		block = 256
	}
	name, err := g.emit("deltanet_gated_norm", deltaNetGatedNormTmpl, deltaNetGatedNormHoles{D: d, Block: block, ZT: zt, WT: wt, Eps: cf(s.Attr().Float("eps")), ZRow: zrow})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Block: block, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}},
		Params: []abi.Param{{Kind: abi.PArg, Index: 5}, {Kind: abi.PArg, Index: 6}, {Kind: abi.POut}, {Kind: abi.PT}, {Kind: abi.PS}}})
	return nil
}
