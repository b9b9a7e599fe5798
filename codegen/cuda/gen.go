package cuda

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

//go:embed prelude.cu
var prelude string

// Tuning constants of the templates.
const (
	// WarpMaxRows is the most rows (tokens) a matmul runs with the
	// warp-per-output kernel; above it, the tiled kernel runs.
	WarpMaxRows = 16
	// SplitSize is the number of cached positions one decode split covers.
	SplitSize = 256
	// maxTileTokens bounds the prefill tile.
	maxTileTokens = 16
	// staticSmem is the static shared memory a kernel may use.
	staticSmem = 48 << 10
)

// Generate emits the module of plan p: one specialised kernel per distinct
// step instantiation, and the launch table. It rejects ops with no template
// and operand dtypes a template does not handle, naming the step.
func Generate(p *ir.Plan) (*Module, error) {
	if p == nil {
		return nil, fmt.Errorf("cuda: nil plan")
	}
	g := &gen{p: p, names: map[string]string{}, m: &Module{SplitSize: SplitSize, TileTokens: maxTileTokens}}
	// Prefill tiles are cut once per step for all attention layers, so the
	// tile size is the smallest any attention step affords.
	for i, s := range p.Steps {
		if s.Op == ir.OpAttention || s.Op == ir.OpQKVAttention {
			a, err := g.attnShape(s)
			if err != nil {
				return nil, fmt.Errorf("cuda: step %d (%v): %w", i, s.Op, err)
			}
			g.m.TileTokens = min(g.m.TileTokens, a.bq)
		}
	}
	for i, s := range p.Steps {
		t, ok := templates[s.Op]
		if !ok {
			return nil, fmt.Errorf("cuda: step %d: op %v has no CUDA template", i, s.Op)
		}
		if err := t(g, i, s); err != nil {
			return nil, fmt.Errorf("cuda: step %d (%v): %w", i, s.Op, err)
		}
	}
	if err := g.argmax(); err != nil {
		return nil, err
	}
	if err := g.candidates(); err != nil { // sample.go
		return nil, err
	}
	var src strings.Builder
	src.WriteString(prelude)
	g.m.bodies = g.bodies
	for _, body := range g.bodies {
		src.WriteString("\n")
		src.WriteString(body)
	}
	g.m.Source = src.String()
	sort.Strings(g.m.Kernels)
	return g.m, nil
}

var templates = map[ir.Op]func(g *gen, step int, s ir.Step) error{
	ir.OpEmbedding:    (*gen).embedding,
	ir.OpRMSNorm:      (*gen).rmsNorm,
	ir.OpMatMul:       (*gen).matmul,
	ir.OpRoPE:         (*gen).rope,
	ir.OpAttention:    (*gen).attention,
	ir.OpSiLU:         (*gen).elementwise,
	ir.OpSigmoid:      (*gen).elementwise,
	ir.OpMul:          (*gen).elementwise,
	ir.OpAdd:          (*gen).elementwise,
	ir.OpGatherRows:   (*gen).gatherRows,
	ir.OpFusedMatMul:  (*gen).matmul,
	ir.OpSection:      (*gen).section,
	ir.OpAddRMSNorm:   (*gen).rmsNorm,
	ir.OpQKVAttention: (*gen).qkvAttention,
}

// Supported reports whether op has a CUDA template.
func Supported(op ir.Op) bool { _, ok := templates[op]; return ok }

type gen struct {
	p      *ir.Plan
	names  map[string]string // kernel text (with KNAME) -> symbol
	bodies []string
	m      *Module
}

// kernel adds an instantiation, named base_<hash of its text>, and returns
// its symbol; an identical instantiation is emitted once.
func (g *gen) kernel(base, text string) string {
	if name, ok := g.names[text]; ok {
		return name
	}
	sum := sha256.Sum256([]byte(text))
	name := base + "_" + hex.EncodeToString(sum[:5])
	g.names[text] = name
	g.bodies = append(g.bodies, strings.ReplaceAll(text, "KNAME", name))
	g.m.Kernels = append(g.m.Kernels, name)
	return name
}

func (g *gen) launch(l abi.Launch) { g.m.Launches = append(g.m.Launches, l) }

// operand returns the dtype and shape of a step operand.
func (g *gen) operand(r ir.Ref) (ir.DType, ir.Shape) {
	switch r.Kind {
	case ir.RefBuffer:
		b := g.p.Buffers[r.Index]
		return b.DType, b.Shape
	case ir.RefWeight:
		w := g.p.Weights[r.Index]
		return w.DType, w.Shape
	case ir.RefInput:
		in := g.p.Inputs[r.Index]
		return in.DType, in.Shape
	}
	return ir.DInvalid, nil
}

func (g *gen) out(s ir.Step) (ir.DType, ir.Shape) {
	b := g.p.Buffers[s.Out]
	return b.DType, b.Shape
}

// ctype is the CUDA element type of a float dtype.
func ctype(dt ir.DType) (string, error) {
	switch dt {
	case ir.F32:
		return "float", nil
	case ir.BF16:
		return "pio_bf16", nil
	case ir.F16:
		return "pio_f16", nil
	}
	return "", fmt.Errorf("dtype %v has no CUDA float type", dt)
}

// count splits a shape's element count into perT·T + perS·S + fixed.
func count(s ir.Shape) (perT, perS, fixed int64) {
	n, sym := int64(1), ir.Dim(0)
	for _, d := range s {
		if d.Symbolic() {
			sym = d
			continue
		}
		n *= int64(d)
	}
	switch sym {
	case ir.T:
		return n, 0, 0
	case ir.S:
		return 0, n, 0
	}
	return 0, 0, n
}

// cExpr is the C expression of perT·T + perS·S + fixed (as long).
func cExpr(perT, perS, fixed int64) string {
	var parts []string
	if perT != 0 {
		parts = append(parts, fmt.Sprintf("%dL * T", perT))
	}
	if perS != 0 {
		parts = append(parts, fmt.Sprintf("%dL * S", perS))
	}
	if fixed != 0 || len(parts) == 0 {
		parts = append(parts, fmt.Sprintf("%dL", fixed))
	}
	return "(" + strings.Join(parts, " + ") + ")"
}

// rows is an element count divided by a row length, as a grid Expr and a C
// expression.
func rows(s ir.Shape, rowLen int64) (abi.Expr, string, error) {
	t, sq, f := count(s)
	if rowLen <= 0 || t%rowLen != 0 || sq%rowLen != 0 || f%rowLen != 0 {
		return abi.Expr{}, "", fmt.Errorf("shape %v is not a whole number of rows of %d", s, rowLen)
	}
	t, sq, f = t/rowLen, sq/rowLen, f/rowLen
	return abi.Expr{T: t, S: sq, Fixed: f}, cExpr(t, sq, f), nil
}

func cf(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return "0.0f"
	}
	s := strconv.FormatFloat(float64(float32(v)), 'g', 9, 32)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s + "f"
}

// ptrs are the usual params of a kernel over the step's args and output,
// then T and S.
func stdParams(nargs int) []abi.Param {
	var ps []abi.Param
	for i := 0; i < nargs; i++ {
		ps = append(ps, abi.Param{Kind: abi.PArg, Index: uint16(i)})
	}
	return append(ps, abi.Param{Kind: abi.POut}, abi.Param{Kind: abi.PT}, abi.Param{Kind: abi.PS})
}

// embeddingHoles fill embedding.
type embeddingHoles struct {
	WT       string // table element type
	Vocab, H int64  // the table is [Vocab, H]
	N        string // C expression: the ids
}

// embeddingTmpl gathers table rows, one block per id.
var embeddingTmpl = kernelTemplate("embedding", `// embedding: y[i, :] = table[ids[i], :]; table {{.WT}}[{{.Vocab}}, {{.H}}]; an id outside the table gives zeros.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.WT}}* __restrict__ table, const int* __restrict__ ids, float* __restrict__ y, int T, int S) {
  const long i = blockIdx.x;
  if (i >= {{.N}}) return;
  const int id = ids[i];
  float* yr = y + i * {{.H}}L;
  if (id < 0 || id >= {{.Vocab}}) {
    for (int c = threadIdx.x; c < {{.H}}; c += blockDim.x) yr[c] = 0.f;
    return;
  }
  const {{.WT}}* r = table + (long)id * {{.H}}L;
  for (int c = threadIdx.x; c < {{.H}}; c += blockDim.x) yr[c] = pio_f32(r[c]);
}
`)

func (g *gen) embedding(step int, s ir.Step) error {
	tdt, tsh := g.operand(s.Args[0])
	_, ids := g.operand(s.Args[1])
	wt, err := ctype(tdt)
	if err != nil {
		return err
	}
	vocab, h := int64(tsh[0]), int64(tsh[1])
	grid, n, _ := rows(ids, 1)
	name, err := g.emit("embedding", embeddingTmpl, embeddingHoles{WT: wt, Vocab: vocab, H: h, N: n})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}, Block: min(256, roundUp(int(h), 32))})
	return nil
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// rmsNormHoles fill rms_norm.
type rmsNormHoles struct {
	XT, BT, WT string // x, b (add_rms_norm; "": none) and weight element types
	D          int64  // row length
	Eps, Off   string // C literals: eps, and 0 or 1 (unit_offset)
	Block      int    // threads
}

// V is the C expression of v[c].
func (h rmsNormHoles) V() string {
	if h.BT != "" {
		return "__fadd_rn(pio_f32(xr[c]), pio_f32(br[c]))"
	}
	return "pio_f32(xr[c])"
}

// rmsNormTmpl is rms_norm (of x, or of a + b for add_rms_norm), one block
// per row.
var rmsNormTmpl = kernelTemplate("rms_norm", `// rms_norm over rows of {{.D}} of v = {{if .BT}}a + b{{else}}x{{end}}: y = v / sqrt(mean(v²) + eps) · ({{.Off}} + w).
extern "C" __global__ void __launch_bounds__({{.Block}}) KNAME(const {{.XT}}* __restrict__ x, {{if .BT}}const {{.BT}}* __restrict__ b, {{end}}const {{.WT}}* __restrict__ w, float* __restrict__ y, int T, int S) {
  __shared__ float red[32];
  const long row = blockIdx.x;  // the grid has exactly one block per row
  const {{.XT}}* xr = x + row * {{.D}}L;
  float* yr = y + row * {{.D}}L;
{{- if .BT}}
  const {{.BT}}* br = b + row * {{.D}}L;
{{- end}}
  float ss = 0.f;
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}}) {
    const float v = {{.V}};
    ss = fmaf(v, v, ss);
  }
  ss = pio_block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / {{.D}}.0f + {{.Eps}});
  for (int c = threadIdx.x; c < {{.D}}; c += {{.Block}}) yr[c] = __fmul_rn(__fmul_rn({{.V}}, inv), {{.Off}} + pio_f32(w[c]));
}
`)

func (g *gen) rmsNorm(step int, s ir.Step) error {
	// rms_norm(x, w) or add_rms_norm(a, b, w) = rms_norm(a + b, w).
	wi := len(s.Args) - 1
	xdt, xsh := g.operand(s.Args[0])
	wdt, _ := g.operand(s.Args[wi])
	wt, err := ctype(wdt)
	if err != nil {
		return err
	}
	xt, err := ctype(xdt)
	if err != nil {
		return err
	}
	d := int64(xsh.Last())
	grid, _, err := rows(xsh, d)
	if err != nil {
		return err
	}
	off := "0.0f"
	if s.Attr().Bool("unit_offset") {
		off = "1.0f"
	}
	block := 128
	if d > 1024 {
		block = 256
	}
	bt := ""
	if wi == 2 {
		bdt, _ := g.operand(s.Args[1])
		if bt, err = ctype(bdt); err != nil {
			return err
		}
	}
	name, err := g.emit("rms_norm", rmsNormTmpl, rmsNormHoles{XT: xt, BT: bt, WT: wt, D: d, Eps: cf(s.Attr().Float("eps")), Off: off, Block: block})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(len(s.Args)), Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}, Block: block})
	return nil
}

// elementwiseHoles fill elementwise.
type elementwiseHoles struct {
	Op     ir.Op
	N      string // C expression: the elements
	AT, BT string // a and b (binary ops; "": none) element types
	Expr   string // C expression of y from va (and vb)
}

// elementwiseTmpl is a unary or binary elementwise op over every element.
var elementwiseTmpl = kernelTemplate("elementwise", `// {{.Op}} over {{.N}} elements.
extern "C" __global__ void __launch_bounds__(256) KNAME(const {{.AT}}* __restrict__ a, {{if .BT}}const {{.BT}}* __restrict__ b, {{end}}float* __restrict__ y, int T, int S) {
  const long n = {{.N}};
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    const float va = pio_f32(a[i]);{{if .BT}} const float vb = pio_f32(b[i]);{{end}}
    y[i] = {{.Expr}};
  }
}
`)

func (g *gen) elementwise(step int, s ir.Step) error {
	var expr string
	switch s.Op {
	case ir.OpSiLU:
		expr = "va / (1.0f + expf(-va))"
	case ir.OpSigmoid:
		expr = "1.0f / (1.0f + expf(-va))"
	case ir.OpMul:
		expr = "__fmul_rn(va, vb)"
	case ir.OpAdd:
		expr = "__fadd_rn(va, vb)"
	}
	adt, ash := g.operand(s.Args[0])
	at, err := ctype(adt)
	if err != nil {
		return err
	}
	bt := ""
	if len(s.Args) == 2 {
		bdt, _ := g.operand(s.Args[1])
		if bt, err = ctype(bdt); err != nil {
			return err
		}
	}
	t, sq, f := count(ash)
	name, err := g.emit(s.Op.String(), elementwiseTmpl, elementwiseHoles{Op: s.Op, N: cExpr(t, sq, f), AT: at, BT: bt, Expr: expr})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(len(s.Args)), Block: 256,
		Grid: [3]abi.Expr{{T: t, S: sq, Fixed: f, Div: 256}, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// gatherRowsHoles fill gather_rows.
type gatherRowsHoles struct {
	ET  string // the element type, as bits
	Row int64  // row length
	N   string // C expression: the rows
}

// gatherRowsTmpl copies rows, one block per output row.
var gatherRowsTmpl = kernelTemplate("gather_rows", `// gather_rows: y[r, :] = x[rows[r], :], rows of {{.Row}} elements; a row outside the step gives zeros.
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.ET}}* __restrict__ x, const int* __restrict__ rows, {{.ET}}* __restrict__ y, int T, int S) {
  const long r = blockIdx.x;
  if (r >= {{.N}}) return;
  const int src = rows[r];
  {{.ET}}* yr = y + r * {{.Row}}L;
  if (src < 0 || src >= T) {
    for (int c = threadIdx.x; c < {{.Row}}; c += blockDim.x) yr[c] = 0;
    return;
  }
  const {{.ET}}* xr = x + (long)src * {{.Row}}L;
  for (int c = threadIdx.x; c < {{.Row}}; c += blockDim.x) yr[c] = xr[c];
}
`)

func (g *gen) gatherRows(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	_, rsh := g.operand(s.Args[1])
	var et string
	switch xdt.Size() {
	case 4:
		et = "unsigned"
	case 2:
		et = "unsigned short"
	default:
		return fmt.Errorf("x dtype %v not supported", xdt)
	}
	row, _ := xsh[1:].Elems(0, 0)
	grid, n, _ := rows(rsh, 1)
	name, err := g.emit("gather_rows", gatherRowsTmpl, gatherRowsHoles{ET: et, Row: row, N: n})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(2), Block: 128, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// sectionHoles fill section.
type sectionHoles struct {
	ET          string // the element type, as bits
	Start, Size int64  // the columns copied
	D           int64  // row length
}

// sectionTmpl copies a range of every row, one block per row.
var sectionTmpl = kernelTemplate("section", `// section: y[r, :] = x[r, {{.Start}}:{{.Start}}+{{.Size}}] of rows of {{.D}}.
extern "C" __global__ void __launch_bounds__(128) KNAME(const {{.ET}}* __restrict__ x, {{.ET}}* __restrict__ y, int T, int S) {
  const long r = blockIdx.x;  // one block per row
  for (int c = threadIdx.x; c < {{.Size}}; c += blockDim.x) y[r * {{.Size}}L + c] = x[r * {{.D}}L + {{.Start}} + c];
}
`)

// section copies a range of every row (ir/op.go): its bits, so x and y
// share a dtype of 4 or 2 bytes.
func (g *gen) section(step int, s ir.Step) error {
	xdt, xsh := g.operand(s.Args[0])
	if xdt.Size() != 4 && xdt.Size() != 2 {
		return fmt.Errorf("x dtype %v not supported", xdt)
	}
	et := map[int]string{4: "unsigned", 2: "unsigned short"}[xdt.Size()]
	d := int64(xsh.Last())
	start, size := s.Attr().Int("start"), s.Attr().Int("size")
	grid, _, err := rows(xsh, d)
	if err != nil {
		return err
	}
	name, err := g.emit("section", sectionTmpl, sectionHoles{ET: et, Start: start, Size: size, D: d})
	if err != nil {
		return err
	}
	g.launch(abi.Launch{Step: step, Kernel: name, Params: stdParams(1), Block: 128, Grid: [3]abi.Expr{grid, {Fixed: 1}, {Fixed: 1}}})
	return nil
}

// argmaxTmpl is the greedy-sampling kernel over rows of V logits, one block
// of 256 threads per row.
var argmaxTmpl = kernelTemplate("argmax", `// argmax of each row of {{.V}} logits (the first index of the maximum; NaN never wins; -1 for a row without a finite maximum).
extern "C" __global__ void __launch_bounds__(256) KNAME(const float* __restrict__ x, int* __restrict__ out, int rows) {
  __shared__ float bv[8];
  __shared__ int bi[8];
  const long r = blockIdx.x;
  if (r >= rows) return;
  const float* xr = x + r * {{.V}}L;
  float best = -INFINITY;
  int idx = 0x7fffffff;
  for (int c = threadIdx.x; c < {{.V}}; c += 256) {
    const float v = xr[c];
    if (v > best) { best = v; idx = c; }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > best || (ov == best && oi < idx)) { best = ov; idx = oi; }
  }
  if ((threadIdx.x & 31) == 0) { bv[threadIdx.x >> 5] = best; bi[threadIdx.x >> 5] = idx; }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < 8; w++)
      if (bv[w] > best || (bv[w] == best && bi[w] < idx)) { best = bv[w]; idx = bi[w]; }
    out[r] = (idx == 0x7fffffff || !(fabsf(best) <= 3.402823466e+38f)) ? -1 : idx;  // -1: no finite maximum
  }
}
`)

// argmax adds a greedy-sampling helper for a "logits" output of [S, V].
func (g *gen) argmax() error {
	for _, o := range g.p.Outputs {
		b := g.p.Buffers[o.Buffer]
		if o.Name != "logits" || len(b.Shape) != 2 || b.Shape[1].Symbolic() || b.DType != ir.F32 {
			continue
		}
		v := int64(b.Shape[1])
		name, err := g.emit("argmax", argmaxTmpl, struct{ V int64 }{v})
		if err != nil {
			return err
		}
		g.m.Argmax = name
		g.m.ArgmaxVocab = int(v)
	}
	return nil
}
