package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// Templates of the Gated DeltaNet family (ir/op_deltanet.go) and the concat
// of activations its graphs use (its sections take gen.go's template),
// with the semantics of runtime/cpu/deltanet.go.
//
// The state kernels (conv1d_causal, gated_delta_rule) run one block per
// (sequence, ...): blockIdx.x is the sequence index (the grid has T blocks
// along x, those with no tokens in the step return at once); the block finds
// its sequence's contiguous run of tokens in seq_of_token, reads the state
// from the slot slots[seq] of the state cache (PCacheK: the cache's one
// entry pool, [slots, entry] f32), starts from zero state when the run starts
// at position 0, and writes the state back. The position-continuity check
// (a run at position p > 0 must find its slot holding the state after p
// positions) is the runtime's, on the host, before the step runs.
//
// gated_delta_rule has two launches: the recurrent form for decode steps
// (every sequence brings one token) and the chunked form for every other
// step (chunks of the op's chunk attr; the chunk's normalised q, k, the
// UT-transformed values and keys, the chunk matrix and the row groups'
// partial products live in the per-sequence workspace (PSeqWork), one
// region per (sequence, value head)); a chunk of one token takes the
// recurrent form, as on the CPU. Both keep the state in registers, each
// value column split over P threads of at most 32 rows.
func init() {
	templates[ir.OpConv1DCausal] = (*gen).conv1dCausal
	templates[ir.OpGatedDeltaRule] = (*gen).gatedDeltaRule
	templates[ir.OpDeltaNetDecay] = (*gen).deltaNetDecay
	templates[ir.OpMulRows] = (*gen).mulRows
	templates[ir.OpConcat] = (*gen).deltaConcat // activations; concats of weights fold at build time
}

// Limits of the DeltaNet templates: the recurrent state column of one
// thread is a register array of dk floats, and a block has one thread per
// value column.
const (
	maxDeltaDK = 256
	maxDeltaDV = 1024
)

// seqRunTmpl finds, in a block of sequence seq, its tokens [t0, t0+n) of the
// step (contiguous by the batch contract); a block whose sequence has no
// token returns. Each boundary has exactly one writer, so no atomics.
var seqRunTmpl = kernelTemplate("seq_run", `  __shared__ int run_lo, run_hi;
  if (threadIdx.x == 0) { run_lo = 0; run_hi = -1; }
  __syncthreads();
  for (int t = threadIdx.x; t < T; t += blockDim.x) {
    if (seq_of_token[t] != seq) continue;
    if (t == 0 || seq_of_token[t - 1] != seq) run_lo = t;
    if (t == T - 1 || seq_of_token[t + 1] != seq) run_hi = t;
  }
  __syncthreads();
  const int t0 = run_lo, n = run_hi - run_lo + 1;
  if (n <= 0) return;
  const bool fresh = positions[t0] == 0;`)

// stateParams are the trailing params of a state kernel.
func stateParams(nargs, cache int) []abi.Param {
	return append(stdParams(nargs), abi.Param{Kind: abi.PPositions}, abi.Param{Kind: abi.PSeqOfToken}, abi.Param{Kind: abi.PSlots}, abi.Param{Kind: abi.PCacheK, Index: uint16(cache)})
}

const stateDecl = "const int* __restrict__ positions, const int* __restrict__ seq_of_token, const int* __restrict__ slots, float* __restrict__ state"

// stateCache checks that cache ci of the plan is a state cache of one f32
// entry of shape want.
func (g *gen) stateCache(ci int64, want ir.Shape) error {
	if ci < 0 || int(ci) >= len(g.p.Caches) {
		return fmt.Errorf("cache %d not declared", ci)
	}
	c := g.p.Caches[ci]
	if c.Kind != ir.CacheState || c.DType != ir.F32 || len(c.Entries) != 1 || !c.Entries[0].Equal(want) {
		return fmt.Errorf("cache %d (%v %v %v) is not an f32 state cache of one entry %v", ci, c.Kind, c.DType, c.Entries, want)
	}
	return nil
}

// ctypes returns the CUDA types of the step's args, and checks the output
// is f32.
func (g *gen) ctypes(s ir.Step) ([]string, error) {
	if dt, _ := g.out(s); dt != ir.F32 {
		return nil, fmt.Errorf("output dtype %v, want f32", dt)
	}
	var ts []string
	for i, a := range s.Args {
		dt, _ := g.operand(a)
		t, err := ctype(dt)
		if err != nil {
			return nil, fmt.Errorf("arg %d: %w", i, err)
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// conv1dHoles fill conv1d_causal.
type conv1dHoles struct {
	XT, WT string // x and weight element types
	C, K   int64  // channels, taps
	KM1    int64  // the state's inputs per channel
	SiLU   bool   // y = silu(conv)
}

// conv1dCausalTmpl: one thread per channel, one block per (sequence, 128 channels).
var conv1dCausalTmpl = kernelTemplate("conv1d_causal", `// conv1d_causal: {{if .SiLU}}silu(y){{else}}y{{end}} over C={{.C}} channels, K={{.K}}, per sequence run; y[t,c] = Σ_j w[c,j]·x[t−K+1+j, c], the K−1 inputs before the run from the conv state [slot, C, K−1], which gets the run's last K−1 inputs.
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.XT}}* __restrict__ x, const {{.WT}}* __restrict__ w, float* __restrict__ y, int T, int S, `+stateDecl+`) {
  const int seq = blockIdx.x;
{{template "seq_run"}}
  const int c = blockIdx.y * 128 + threadIdx.x;
  if (c >= {{.C}}) return;
{{template "conv1d_state" .}}
}
`)

// XRow and YRow are the row lengths of x and y, XCol x's column of channel c.
func (h conv1dHoles) XRow() int64  { return h.C }
func (h conv1dHoles) YRow() int64  { return h.C }
func (h conv1dHoles) XCol() string { return "c" }

// conv1dStateTmpl is the causal conv of one channel c over the run of its
// sequence: the K−1 inputs before the run from the state, which gets the
// run's last K−1 inputs.
var conv1dStateTmpl = kernelTemplate("conv1d_state", `  float* st = state + ((long)slots[seq] * {{.C}} + c) * {{.KM1}};
  float h[{{.KM1}}], wk[{{.K}}];
#pragma unroll
  for (int m = 0; m < {{.KM1}}; m++) h[m] = fresh ? 0.f : st[m];
#pragma unroll
  for (int j = 0; j < {{.K}}; j++) wk[j] = pio_f32(w[(long)c * {{.K}} + j]);
  for (int i = 0; i < n; i++) {
    const long t = t0 + i;
    const float xi = pio_f32(x[t * {{.XRow}}L + {{.XCol}}]);
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < {{.KM1}}; j++) acc = __fadd_rn(acc, __fmul_rn(wk[j], h[j]));
    acc = __fadd_rn(acc, __fmul_rn(wk[{{.KM1}}], xi));
{{- if .SiLU}}
    acc = acc / (1.0f + expf(-acc));
{{- end}}
    y[t * {{.YRow}}L + c] = acc;
#pragma unroll
    for (int m = 0; m + 1 < {{.KM1}}; m++) h[m] = h[m + 1];
    h[{{.KM1}} - 1] = xi;
  }
#pragma unroll
  for (int m = 0; m < {{.KM1}}; m++) st[m] = h[m];`)

func (g *gen) conv1dCausal(step int, s ir.Step) error {
	ts, err := g.ctypes(s)
	if err != nil {
		return err
	}
	_, xsh := g.operand(s.Args[0])
	_, wsh := g.operand(s.Args[1])
	c, k := int64(xsh[1]), int64(wsh.Last())
	ci := s.Attr().Int("cache")
	if err := g.stateCache(ci, ir.Sh(ir.Dim(c), ir.Dim(k-1))); err != nil {
		return err
	}
	name, err := g.emit("conv1d_causal", conv1dCausalTmpl, conv1dHoles{XT: ts[0], WT: ts[1], C: c, K: k, KM1: k - 1, SiLU: s.Attr().String("activation") == "silu"})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stateParams(2, int(ci)), Block: 128,
		Grid: [3]abi.Expr{{T: 1}, {Fixed: (c + 127) / 128}, {Fixed: 1}}})
	return nil
}

// deltaNetDecayHoles fill deltanet_decay.
type deltaNetDecayHoles struct {
	AT, LT, BT string // a, A_log and dt_bias element types
	H          int64  // value heads
}

// deltaNetDecayTmpl is elementwise over [T, H].
var deltaNetDecayTmpl = kernelTemplate("deltanet_decay", `// deltanet_decay over [T, {{.H}}]: g = −exp(A_log)·softplus(a + dt_bias) (softplus(x) = x above 20).
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.AT}}* __restrict__ a, const {{.LT}}* __restrict__ alog, const {{.BT}}* __restrict__ dtb, float* __restrict__ y, int T, int S) {
  const long n = (long)T * {{.H}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const int j = (int)(i % {{.H}});
    const float x = __fadd_rn(pio_f32(a[i]), pio_f32(dtb[j]));
    const float sp = x > 20.f ? x : log1pf(expf(x));
    y[i] = -expf(pio_f32(alog[j])) * sp;
  }
}
`)

func (g *gen) deltaNetDecay(step int, s ir.Step) error {
	ts, err := g.ctypes(s)
	if err != nil {
		return err
	}
	_, ash := g.operand(s.Args[0])
	h := int64(ash[1])
	name, err := g.emit("deltanet_decay", deltaNetDecayTmpl, deltaNetDecayHoles{AT: ts[0], LT: ts[1], BT: ts[2], H: h})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(3), Block: 256,
		Grid: [3]abi.Expr{{T: h, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// mulRowsHoles fill mul_rows.
type mulRowsHoles struct {
	XT, ST string // x and s element types
	Row    int64  // row length
}

// mulRowsTmpl scales each row by its s.
var mulRowsTmpl = kernelTemplate("mul_rows", `// mul_rows: y[t, :] = x[t, :]·s[t], rows of {{.Row}}.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.XT}}* __restrict__ x, const {{.ST}}* __restrict__ s, float* __restrict__ y, int T, int S) {
  const long n = (long)T * {{.Row}}L;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    y[i] = __fmul_rn(pio_f32(x[i]), pio_f32(s[i / {{.Row}}L]));
}
`)

func (g *gen) mulRows(step int, s ir.Step) error {
	ts, err := g.ctypes(s)
	if err != nil {
		return err
	}
	_, xsh := g.operand(s.Args[0])
	row, _ := xsh[1:].Elems(0, 0)
	name, err := g.emit("mul_rows", mulRowsTmpl, mulRowsHoles{XT: ts[0], ST: ts[1], Row: row})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 256,
		Grid: [3]abi.Expr{{T: row, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// concatHoles fill concat: the parts' rows joined into rows of Total.
type concatHoles struct {
	Axis  int
	Total int64
	N     string // C expression: the output's elements
	Parts []concatPart
}

// concatPart is one part: element type T, columns [Start, Start+Inner) of
// a row.
type concatPart struct {
	T            string
	Start, Inner int64
	Last         bool
}

// End is the column after the part's.
func (p concatPart) End() int64 { return p.Start + p.Inner }

// concatTmpl joins the rows of the parts, one thread per output element.
var concatTmpl = kernelTemplate("concat", `// concat along axis {{.Axis}}: rows of {{.Total}} joined from the parts.
extern "C" __global__ void __launch_bounds__(256) KNAME({{range $i, $p := .Parts}}const {{$p.T}}* __restrict__ p{{$i}}, {{end}}float* __restrict__ y, int T, int S) {
  const long n = {{.N}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const long o = i / {{.Total}}L, r = i % {{.Total}}L;
{{- range $i, $p := .Parts}}
    {{if $i}}else {{end}}{{if not $p.Last}}if (r < {{$p.End}}) {{end}}y[i] = pio_f32(p{{$i}}[o * {{$p.Inner}}L + r - {{$p.Start}}]);
{{- end}}
  }
}
`)

func (g *gen) deltaConcat(step int, s ir.Step) error {
	ts, err := g.ctypes(s)
	if err != nil {
		return err
	}
	axis := int(s.Attr().Int("axis"))
	h := concatHoles{Axis: axis}
	for i, a := range s.Args {
		_, sh := g.operand(a)
		if axis < 0 || axis >= len(sh) {
			return fmt.Errorf("axis %d of part %v", axis, sh)
		}
		for _, d := range sh[axis:] {
			if d.Symbolic() {
				return fmt.Errorf("part %d: the dims from the axis on must be static, got %v", i, sh)
			}
		}
		inner, _ := sh[axis:].Elems(0, 0)
		h.Parts = append(h.Parts, concatPart{T: ts[i], Start: h.Total, Inner: inner, Last: i == len(s.Args)-1})
		h.Total += inner
	}
	_, osh := g.out(s)
	t, sq, f := count(osh)
	h.N = cExpr(t, sq, f)
	name, err := g.emit("concat", concatTmpl, h)
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(len(s.Args)), Block: 256,
		Grid: [3]abi.Expr{{T: t, S: sq, Fixed: f, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// deltaNormTmpl l2-normalises (when L2) and scales row p of q and row pk of k, of
// DK floats each, in place.
var deltaNormTmpl = kernelTemplate("delta_norm", `      if (L2) {
        float sq = 0.f, sk = 0.f;
        for (int i = 0; i < DK; i++) { sq = fmaf(qr[i], qr[i], sq); sk = fmaf(kr[i], kr[i], sk); }
        const float iq = 1.0f / sqrtf(sq + 1e-6f), ik = 1.0f / sqrtf(sk + 1e-6f);
        for (int i = 0; i < DK; i++) { qr[i] = __fmul_rn(__fmul_rn(qr[i], iq), SCALE); kr[i] = __fmul_rn(kr[i], ik); }
      } else {
        for (int i = 0; i < DK; i++) qr[i] = __fmul_rn(qr[i], SCALE);
      }`)

// deltaRuleHoles fill the gated_delta_rule templates.
type deltaRuleHoles struct {
	QT, KT, VT, GT, BT string // q, k, v, g and beta element types
	HK, HV, DK, DV     int64  // key and value heads and head dims
	L2                 bool   // l2-normalise q and k
	Scale              string // C literal
	P, DVR, Threads    int    // row groups of a state column, value columns rounded up to a warp, threads (P·DVR)
	C                  int64  // chunk (prefill)
	Per                int64  // workspace floats per (sequence, value head) (prefill)
}

// deltaRuleSignatureTmpl is the rule kernels' signature up to the state
// parameters (the chunked form adds its workspace).
var deltaRuleSignatureTmpl = kernelTemplate("delta_rule_signature", `extern "C" __global__ void __launch_bounds__({{.Threads}}) KNAME(const {{.QT}}* __restrict__ q, const {{.KT}}* __restrict__ k, const {{.VT}}* __restrict__ v, const {{.GT}}* __restrict__ g, const {{.BT}}* __restrict__ beta, float* __restrict__ y, int T, int S, `+stateDecl)

// deltaRuleConstsTmpl are the rule kernels' sizes and options.
var deltaRuleConstsTmpl = kernelTemplate("delta_rule_consts", `  constexpr int HK = {{.HK}}, HV = {{.HV}}, DK = {{.DK}}, DV = {{.DV}};
  constexpr bool L2 = {{.L2}};
  constexpr float SCALE = {{.Scale}};`)

// gatedDeltaRuleRecTmpl is the recurrent form (decode): thread (p, j) holds
// rows [p·R, (p+1)·R) of state column j (R = DK/P floats in registers, P
// chosen so R ≤ 32 where the block allows); the dot products over DK are
// summed over the P partials through shared memory.
var gatedDeltaRuleRecTmpl = kernelTemplate("gated_delta_rule_rec", `// gated_delta_rule, recurrent form (decode): one block per (sequence, value head), state [slot, {{.HV}}, {{.DK}}, {{.DV}}] f32; thread (p, j) holds rows p·R..p·R+R−1 of value column j (P = {{.P}}).
{{template "delta_rule_signature" .}}) {
{{template "delta_rule_consts" .}}
  constexpr int P = {{.P}}, R = DK / P, DVR = {{.DVR}};
  __shared__ float qsh[DK], ksh[DK], red[P][DVR], bred[32];
  const int seq = blockIdx.x, h = blockIdx.y, kh = h / (HV / HK);
  const int p = threadIdx.x / DVR, j = threadIdx.x % DVR;
{{template "seq_run"}}
  float* st = state + ((long)slots[seq] * HV + h) * (DK * DV);
  float s[R];
#pragma unroll
  for (int r = 0; r < R; r++) s[r] = fresh || j >= DV ? 0.f : st[(p * R + r) * DV + j];
  for (int tt = 0; tt < n; tt++) {
    const long t = t0 + tt;
    __syncthreads();
    float sq = 0.f, sk = 0.f;
    for (int i = threadIdx.x; i < DK; i += blockDim.x) {
      const float a = pio_f32(q[(t * HK + kh) * DK + i]), b = pio_f32(k[(t * HK + kh) * DK + i]);
      qsh[i] = a;
      ksh[i] = b;
      sq = fmaf(a, a, sq);
      sk = fmaf(b, b, sk);
    }
    float iq = 1.0f, ik = 1.0f;
    if (L2) {
      iq = 1.0f / sqrtf(pio_block_sum(sq, bred) + 1e-6f);
      ik = 1.0f / sqrtf(pio_block_sum(sk, bred) + 1e-6f);
    }
    for (int i = threadIdx.x; i < DK; i += blockDim.x) {
      qsh[i] = __fmul_rn(L2 ? __fmul_rn(qsh[i], iq) : qsh[i], SCALE);
      if (L2) ksh[i] = __fmul_rn(ksh[i], ik);
    }
    __syncthreads();
    const float decay = expf(pio_f32(g[t * HV + h])), bv = pio_f32(beta[t * HV + h]);
    float part = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++) { s[r] = __fmul_rn(s[r], decay); part = __fadd_rn(part, __fmul_rn(s[r], ksh[p * R + r])); }
    red[p][j] = part;
    __syncthreads();
    float kv = 0.f;
#pragma unroll
    for (int u = 0; u < P; u++) kv = __fadd_rn(kv, red[u][j]);
    const float d = j < DV ? __fmul_rn(__fadd_rn(pio_f32(v[(t * HV + h) * DV + j]), -kv), bv) : 0.f;
    __syncthreads();
    part = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++) { s[r] = __fadd_rn(s[r], __fmul_rn(ksh[p * R + r], d)); part = __fadd_rn(part, __fmul_rn(s[r], qsh[p * R + r])); }
    red[p][j] = part;
    __syncthreads();
    if (p == 0 && j < DV) {
      float o = 0.f;
#pragma unroll
      for (int u = 0; u < P; u++) o = __fadd_rn(o, red[u][j]);
      y[(t * HV + h) * DV + j] = o;
    }
  }
  if (j < DV) {
#pragma unroll
    for (int r = 0; r < R; r++) st[(p * R + r) * DV + j] = s[r];
  }
}
`)

// gatedDeltaRuleChunkTmpl is the chunked form (prefill): the chunk's work
// arrays in the workspace; the state split over threads as in the
// recurrent kernel, the partial products W·S and Q·S of the P row groups
// summed through the workspace.
var gatedDeltaRuleChunkTmpl = kernelTemplate("gated_delta_rule_chunk", `// gated_delta_rule, chunked form (chunks of {{.C}}; prefill): one block per (sequence, value head), state [slot, {{.HV}}, {{.DK}}, {{.DV}}] f32; thread (p, j) holds rows p·R..p·R+R−1 of value column j (P = {{.P}}); the chunk's arrays in {{.Per}} floats of the per-sequence workspace per head.
{{template "delta_rule_signature" .}}, float* __restrict__ ws) {
{{template "delta_rule_consts" .}}
  constexpr int C = {{.C}}, P = {{.P}}, R = DK / P, DVR = {{.DVR}};
  __shared__ float red[P][DVR];
  const int seq = blockIdx.x, h = blockIdx.y, kh = h / (HV / HK);
  const int p = threadIdx.x / DVR, j = threadIdx.x % DVR;
{{template "seq_run"}}
  float* st = state + ((long)slots[seq] * HV + h) * (DK * DV);
  float s[R];
#pragma unroll
  for (int r = 0; r < R; r++) s[r] = fresh || j >= DV ? 0.f : st[(p * R + r) * DV + j];
  float* Q = ws + ((long)seq * HV + h) * {{.Per}}L;
  float* K = Q + C * DK;
  float* W = K + C * DK;
  float* U = W + C * DK;
  float* VN = U + C * DV;
  float* A = VN + C * DV;
  float* Gc = A + C * C;
  float* Bc = Gc + C;
  float* PV = Bc + C;
  float* PO = PV + P * C * DV;
  for (int c0 = 0; c0 < n; c0 += C) {
    const int nc = min(C, n - c0);
    const long tc = t0 + c0;
    __syncthreads();
    for (int e = threadIdx.x; e < nc * DK; e += blockDim.x) {
      const long t = tc + e / DK;
      const int i = e % DK;
      Q[e] = pio_f32(q[(t * HK + kh) * DK + i]);
      K[e] = pio_f32(k[(t * HK + kh) * DK + i]);
    }
    if (threadIdx.x == 0) {
      float G = 0.f;
      for (int r = 0; r < nc; r++) {
        G = __fadd_rn(G, pio_f32(g[(tc + r) * HV + h]));
        Gc[r] = G;
        Bc[r] = pio_f32(beta[(tc + r) * HV + h]);
      }
    }
    __syncthreads();
    for (int r = threadIdx.x; r < nc; r += blockDim.x) {
      float* qr = Q + r * DK;
      float* kr = K + r * DK;
{{template "delta_norm"}}
    }
    __syncthreads();
    if (nc == 1) {  // the recurrent form
      const float decay = expf(Gc[0]), bv = Bc[0];
      float part = 0.f;
#pragma unroll
      for (int r = 0; r < R; r++) { s[r] = __fmul_rn(s[r], decay); part = __fadd_rn(part, __fmul_rn(s[r], K[p * R + r])); }
      red[p][j] = part;
      __syncthreads();
      float kv = 0.f;
#pragma unroll
      for (int u = 0; u < P; u++) kv = __fadd_rn(kv, red[u][j]);
      const float d = j < DV ? __fmul_rn(__fadd_rn(pio_f32(v[(tc * HV + h) * DV + j]), -kv), bv) : 0.f;
      __syncthreads();
      part = 0.f;
#pragma unroll
      for (int r = 0; r < R; r++) { s[r] = __fadd_rn(s[r], __fmul_rn(K[p * R + r], d)); part = __fadd_rn(part, __fmul_rn(s[r], Q[p * R + r])); }
      red[p][j] = part;
      __syncthreads();
      if (p == 0 && j < DV) {
        float o = 0.f;
#pragma unroll
        for (int u = 0; u < P; u++) o = __fadd_rn(o, red[u][j]);
        y[(tc * HV + h) * DV + j] = o;
      }
      continue;
    }
    // A = strict_lower(diag(β)·K·Kᵀ ⊙ Γ).
    for (int e = threadIdx.x; e < nc * nc; e += blockDim.x) {
      const int r = e / nc, c = e % nc;
      if (c >= r) continue;
      float d = 0.f;
      for (int i = 0; i < DK; i++) d = fmaf(K[r * DK + i], K[c * DK + i], d);
      A[r * C + c] = Bc[r] * d * expf(Gc[r] - Gc[c]);
    }
    __syncthreads();
    // (I + A)·U = diag(β)·V and (I + A)·W = diag(β·e^G)·K, column by column.
    for (int col = threadIdx.x; col < DV + DK; col += blockDim.x) {
      if (col < DV) {
        for (int r = 0; r < nc; r++) {
          float u = Bc[r] * pio_f32(v[((tc + r) * HV + h) * DV + col]);
          for (int c = 0; c < r; c++) u -= A[r * C + c] * U[c * DV + col];
          U[r * DV + col] = u;
        }
      } else {
        const int i = col - DV;
        for (int r = 0; r < nc; r++) {
          float w = Bc[r] * expf(Gc[r]) * K[r * DK + i];
          for (int c = 0; c < r; c++) w -= A[r * C + c] * W[c * DK + i];
          W[r * DK + i] = w;
        }
      }
    }
    __syncthreads();
    // Each row group's share of W·S and Q·S.
    if (j < DV) {
      for (int r = 0; r < nc; r++) {
        float pv = 0.f, po = 0.f;
#pragma unroll
        for (int i = 0; i < R; i++) { pv += W[r * DK + p * R + i] * s[i]; po += Q[r * DK + p * R + i] * s[i]; }
        PV[(p * C + r) * DV + j] = pv;
        PO[(p * C + r) * DV + j] = po;
      }
    }
    // P = lower(Q·Kᵀ ⊙ Γ) into A (A's solves are done).
    for (int e = threadIdx.x; e < nc * nc; e += blockDim.x) {
      const int r = e / nc, c = e % nc;
      if (c > r) continue;
      float d = 0.f;
      for (int i = 0; i < DK; i++) d = fmaf(Q[r * DK + i], K[c * DK + i], d);
      A[r * C + c] = d * expf(Gc[r] - Gc[c]);
    }
    __syncthreads();
    // V_new = U − W·S; O = e^G·(Q·S).
    for (int e = threadIdx.x; e < nc * DV; e += blockDim.x) {
      const int r = e / DV, jj = e % DV;
      float vn = U[r * DV + jj], o = 0.f;
#pragma unroll
      for (int u = 0; u < P; u++) { vn -= PV[(u * C + r) * DV + jj]; o += PO[(u * C + r) * DV + jj]; }
      VN[r * DV + jj] = vn;
      y[((tc + r) * HV + h) * DV + jj] = o * expf(Gc[r]);
    }
    __syncthreads();
    // O += P·V_new.
    for (int e = threadIdx.x; e < nc * DV; e += blockDim.x) {
      const int r = e / DV, jj = e % DV;
      float o = y[((tc + r) * HV + h) * DV + jj];
      for (int c = 0; c <= r; c++) o += A[r * C + c] * VN[c * DV + jj];
      y[((tc + r) * HV + h) * DV + jj] = o;
    }
    // S ← e^(G_n)·S + (diag(e^(G_n−G))·K)ᵀ·V_new, each thread its rows.
    if (j < DV) {
      const float last = Gc[nc - 1], el = expf(last);
#pragma unroll
      for (int i = 0; i < R; i++) s[i] *= el;
      for (int c = 0; c < nc; c++) {
        const float e = expf(last - Gc[c]), vs = VN[c * DV + j];
#pragma unroll
        for (int i = 0; i < R; i++) s[i] += e * K[c * DK + p * R + i] * vs;
      }
    }
  }
  if (j < DV) {
#pragma unroll
    for (int r = 0; r < R; r++) st[(p * R + r) * DV + j] = s[r];
  }
}
`)

func (g *gen) gatedDeltaRule(step int, s ir.Step) error {
	ts, err := g.ctypes(s)
	if err != nil {
		return err
	}
	_, qsh := g.operand(s.Args[0])
	_, vsh := g.operand(s.Args[2])
	hk, dk := int64(qsh[1]), int64(qsh[2])
	hv, dv := int64(vsh[1]), int64(vsh[2])
	if dk > maxDeltaDK || dv > maxDeltaDV {
		return fmt.Errorf("key dim %d (at most %d) or value dim %d (at most %d) too large", dk, maxDeltaDK, dv, maxDeltaDV)
	}
	ci := s.Attr().Int("cache")
	if err := g.stateCache(ci, ir.Sh(ir.Dim(hv), ir.Dim(dk), ir.Dim(dv))); err != nil {
		return err
	}
	chunk := s.Attr().Int("chunk")
	// Decode: the recurrent form, each state column in P row groups of
	// R = DK/P ≤ 32 rows where the block allows.
	dvr := max(32, roundUp(int(dv), 32))
	parts := 1
	for dk/int64(parts) > 32 && dk%int64(2*parts) == 0 && 2*parts*dvr <= 1024 {
		parts *= 2
	}
	nt := parts * dvr
	h := deltaRuleHoles{QT: ts[0], KT: ts[1], VT: ts[2], GT: ts[3], BT: ts[4], HK: hk, HV: hv, DK: dk, DV: dv, L2: s.Attr().Bool("l2norm"), Scale: cf(s.Attr().Float("scale")),
		P: parts, DVR: dvr, Threads: nt, C: chunk}
	decName, err := g.emit("gated_delta_rule_rec", gatedDeltaRuleRecTmpl, h)
	if err != nil {
		return err
	}

	// Prefill: the chunked form, its work arrays in the workspace.
	per := chunk*(3*dk+2*dv+chunk+2) + 2*int64(parts)*chunk*dv
	h.Per = per
	preName, err := g.emit("gated_delta_rule_chunk", gatedDeltaRuleChunkTmpl, h)
	if err != nil {
		return err
	}
	grid := [3]abi.Expr{{T: 1}, {Fixed: hv}, {Fixed: 1}}
	g.launch(abi.Launch{Step: step, Kernel: decName, Params: stateParams(5, int(ci)), Block: nt, Grid: grid, Mode: abi.Decode})
	g.launch(abi.Launch{Step: step, Kernel: preName, Params: append(stateParams(5, int(ci)), abi.Param{Kind: abi.PSeqWork}), Block: nt, Grid: grid, Mode: abi.Prefill,
		Workspace: hv * per})
	return nil
}

// attnGateHoles fill attn_gate.
type attnGateHoles struct {
	HQ, D int // query heads and head dim
	Width int // qkv row length
}

// attnGateTmpl multiplies each head's output by the sigmoid of its gate.
var attnGateTmpl = kernelTemplate("attn_gate", `// attn_gate: y[t, h, c] *= sigmoid(qkv[t, h·2D + D + c]), {{.HQ}} heads of {{.D}}, qkv rows of {{.Width}}.
extern "C" __global__ void __launch_bounds__(256) KNAME(const float* __restrict__ qkv, float* __restrict__ y, int T, int S) {
  const long n = (long)T * {{.HQ}} * {{.D}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const long t = i / ({{.HQ}} * {{.D}});
    const int h = (int)(i % ({{.HQ}} * {{.D}})) / {{.D}}, c = (int)(i % {{.D}});
    const float gv = qkv[t * {{.Width}}L + h * 2 * {{.D}} + {{.D}} + c];
    y[i] = __fmul_rn(y[i], 1.0f / (1.0f + expf(-gv)));
  }
}
`)

// attnGate is the epilogue of gated attention: y[t, h, :] ⊙= sigmoid(gate
// of head h), the gate read from the fused qkv row (after the query of h).
func (g *gen) attnGate(step int, a attn) error {
	width := 2*a.hq*a.d + a.hkv*a.d + a.hkv*a.dv
	name, err := g.emit("attn_gate", attnGateTmpl, attnGateHoles{HQ: a.hq, D: a.d, Width: width})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Block: 256, Grid: [3]abi.Expr{{T: int64(a.hq * a.d), Div: 256}, {Fixed: 1}, {Fixed: 1}},
		Params: []abi.Param{{Kind: abi.PArg, Index: 0}, {Kind: abi.POut}, {Kind: abi.PT}, {Kind: abi.PS}}})
	return nil
}
