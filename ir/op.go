package ir

import "fmt"

// Op is an operation. Numbers are stored in engine files: append only.
// Retire an op by leaving a tombstone (retire, ir/retired.go): its number
// stays taken and keeps its name, and engines and text that use it read as
// the op that replaced it.
//
// Families of ops own number ranges, so work on different architectures can
// add ops side by side, each family in its own file registering its entries
// with defineOp from an init function:
//
//	1–31     core ops (this file; also section, 33, first defined with the fused ops)
//	32–63    fused ops made by passes (QKV, gate/up+SwiGLU, norm prologues, ...)
//	64–95    MoE routing and experts, MLA
//	96–127   Gated DeltaNet and gated attention
//	128–159  vision tower
//	160–191  quantized weights
type Op uint16

const (
	OpInvalid    Op = 0
	OpInput      Op = 1  // runtime input, named by attr name; type declared
	OpWeight     Op = 2  // checkpoint tensor, named by attr name; type declared
	OpEmbedding  Op = 3  // y[t] = table[ids[t]]
	OpRMSNorm    Op = 4  // y = x / sqrt(mean(x²) + eps) · (w or 1+w) over the last dim
	OpMatMul     Op = 5  // y = x·Wᵀ, W is [N, K]
	OpReshape    Op = 6  // same elements, new shape (a view; no data movement)
	OpRoPE       Op = 7  // rotary embedding of the first rotary_dims channels of each head at pos[t]
	OpAttention  Op = 8  // causal paged attention; writes k, v for this step into cache slot `cache`
	OpSiLU       Op = 9  // y = x·sigmoid(x)
	OpMul        Op = 10 // y = a ⊙ b
	OpAdd        Op = 11 // y = a + b
	OpGatherRows Op = 12 // y[s] = x[rows[s]]
	OpSigmoid    Op = 13 // y = 1/(1+e^-x)
	OpConcat     Op = 14 // y = args joined along attr axis; over weights only, it is folded at build time
	// OpSection copies a range of the last dim: section(x [..., D]) {start,
	// size} -> [..., size] = x[..., start:start+size]. Models cut a
	// projection into its parts with it (Builder.Slice), and fuse-sibling-matmuls gives
	// the readers of a fused_matmul their blocks with it. Its number is in
	// the fused range, where it was first defined.
	OpSection Op = 33
)

// OpInfo describes an op: its text name, arity, attributes (schema.go),
// its type-inference rule and a one-line statement of the math.
type OpInfo struct {
	Name    string
	Args    int        // number of args; -1 for variadic
	Attrs   []AttrSpec // every attribute it takes; the verifier rejects others
	Infer   func(args []*Value, at AttrReader) (DType, Shape, error)
	Pure    bool // no side effects: removable when unused, mergeable by CSE
	Comment string
	// Retired, on a tombstone, says which op replaced this one (retired.go).
	Retired *Retirement
}

// opTable is indexed by op number; the init functions fill it with
// defineOp (the core ops below, each family from its own file).
var opTable []OpInfo

var coreOps = []OpInfo{
	OpInput:      {Name: "input", Args: 0, Attrs: []AttrSpec{req("name", TString)}, Pure: true, Comment: "runtime input"},
	OpWeight:     {Name: "weight", Args: 0, Attrs: []AttrSpec{req("name", TString)}, Pure: true, Comment: "checkpoint tensor"},
	OpEmbedding:  {Name: "embedding", Args: 2, Infer: inferEmbedding, Pure: true, Comment: "y[t] = table[ids[t]]"},
	OpRMSNorm:    {Name: "rms_norm", Args: 2, Attrs: []AttrSpec{specEps, specUnitOffset}, Infer: inferRMSNorm, Pure: true, Comment: "x/sqrt(mean(x²)+eps)·w (·(1+w) if unit_offset=1)"},
	OpMatMul:     {Name: "matmul", Args: 2, Infer: inferMatMul, Pure: true, Comment: "y = x·Wᵀ"},
	OpReshape:    {Name: "reshape", Args: 1, Attrs: []AttrSpec{req("shape", TInts)}, Infer: inferReshape, Pure: true, Comment: "view with a new shape"},
	OpRoPE:       {Name: "rope", Args: 2, Attrs: specRoPE, Infer: inferRoPE, Pure: true, Comment: "rotary embedding at positions pos"},
	OpAttention:  {Name: "attention", Args: 3, Attrs: []AttrSpec{specCache, specScale}, Infer: inferAttention, Pure: false, Comment: "causal paged GQA attention; appends k, v to the cache"},
	OpSiLU:       {Name: "silu", Args: 1, Infer: inferUnary, Pure: true, Comment: "x·sigmoid(x)"},
	OpMul:        {Name: "mul", Args: 2, Infer: inferBinary, Pure: true, Comment: "a ⊙ b"},
	OpAdd:        {Name: "add", Args: 2, Infer: inferBinary, Pure: true, Comment: "a + b"},
	OpGatherRows: {Name: "gather_rows", Args: 2, Infer: inferGatherRows, Pure: true, Comment: "y[s] = x[rows[s]]"},
	OpSigmoid:    {Name: "sigmoid", Args: 1, Infer: inferUnary, Pure: true, Comment: "1/(1+e^-x)"},
	OpConcat:     {Name: "concat", Args: -1, Attrs: []AttrSpec{req("axis", TInt), optString("name", "")}, Infer: inferConcat, Pure: true, Comment: "join args along axis"},
}

// Attributes several ops share, declared once so that they mean the same
// everywhere.
var (
	specEps        = req("eps", TFloat)     // RMSNorm / LayerNorm epsilon, > 0
	specNormEps    = optFloat("eps", 0)     // a fused norm's epsilon: required (> 0) where the op applies a norm
	specUnitOffset = optBool("unit_offset") // RMSNorm scales by (1+w) instead of w
	specCache      = req("cache", TInt)     // index of the graph's (plan's) cache the op reads and writes
	specScale      = req("scale", TFloat)   // attention score scale, > 0
	specRoPE       = []AttrSpec{req("theta", TFloat), req("rotary_dims", TInt), req("style", TString)}
)

func init() {
	for op, info := range coreOps {
		if info.Name != "" {
			defineOp(Op(op), info)
		}
	}
	defineOp(OpSection, OpInfo{Name: "section", Args: 1, Attrs: []AttrSpec{req("start", TInt), req("size", TInt)}, Infer: inferSection, Pure: true,
		Comment: "y = x[..., start:start+size]"})
}

// defineOp adds an op to the table; it is called from init functions and
// panics on a number that is taken or an inconsistent attribute schema.
func defineOp(op Op, info OpInfo) {
	for len(opTable) <= int(op) {
		opTable = append(opTable, OpInfo{})
	}
	if opTable[op].Name != "" {
		panic(fmt.Sprintf("ir: op %d defined twice (%s, %s)", op, opTable[op].Name, info.Name))
	}
	if err := info.checkSchema(); err != nil {
		panic(fmt.Sprintf("ir: op %d %s: %v", op, info.Name, err))
	}
	opTable[op] = info
}

// Info returns the table entry of op; ok is false for an unknown op and for
// a retired one (Retired gives its replacement).
func (op Op) Info() (OpInfo, bool) {
	if op == OpInvalid || int(op) >= len(opTable) || opTable[op].Name == "" || opTable[op].Retired != nil {
		return OpInfo{}, false
	}
	return opTable[op], true
}

// String returns the op's text name (a retired op's old name).
func (op Op) String() string {
	if op != OpInvalid && int(op) < len(opTable) && opTable[op].Name != "" {
		return opTable[op].Name
	}
	return fmt.Sprintf("op(%d)", uint16(op))
}

// Ops lists every known op in number order (retired ones left out).
func Ops() []Op {
	var ops []Op
	for i := 1; i < len(opTable); i++ {
		if _, ok := Op(i).Info(); ok {
			ops = append(ops, Op(i))
		}
	}
	return ops
}

// ParseOp finds an op by its text name. A retired op's name gives its
// tombstone's number, which Upgrade reads as the op that replaced it.
func ParseOp(name string) (Op, error) {
	for i := 1; i < len(opTable); i++ {
		if opTable[i].Name == name {
			return Op(i), nil
		}
	}
	return OpInvalid, fmt.Errorf("unknown op %q", name)
}

func isFloat(v *Value) bool { return v.DType.IsFloat() }

func inferEmbedding(a []*Value, _ AttrReader) (DType, Shape, error) {
	table, ids := a[0], a[1]
	if len(table.Shape) != 2 || table.Shape[0].Symbolic() || table.Shape[1].Symbolic() {
		return 0, nil, fmt.Errorf("table must be a static [vocab, hidden], got %v", table.Shape)
	}
	if !isFloat(table) {
		return 0, nil, fmt.Errorf("table must be float, got %v", table.DType)
	}
	if ids.DType != I32 {
		return 0, nil, fmt.Errorf("ids must be i32, got %v", ids.DType)
	}
	return F32, append(ids.Shape.Clone(), table.Shape[1]), nil
}

func inferRMSNorm(a []*Value, at AttrReader) (DType, Shape, error) {
	x, w := a[0], a[1]
	if !isFloat(x) || !isFloat(w) {
		return 0, nil, fmt.Errorf("operands must be float")
	}
	if len(w.Shape) != 1 || w.Shape[0] != x.Shape.Last() || len(x.Shape) == 0 || w.Shape[0].Symbolic() {
		return 0, nil, fmt.Errorf("weight %v does not match the last dim of %v", w.Shape, x.Shape)
	}
	if eps := at.Float("eps"); !(eps > 0) {
		return 0, nil, fmt.Errorf("eps must be > 0")
	}
	return F32, x.Shape.Clone(), nil
}

func inferMatMul(a []*Value, _ AttrReader) (DType, Shape, error) {
	x, w := a[0], a[1]
	if !isFloat(x) || !isFloat(w) {
		return 0, nil, fmt.Errorf("operands must be float")
	}
	if len(w.Shape) != 2 || w.Shape[0].Symbolic() || w.Shape[1].Symbolic() {
		return 0, nil, fmt.Errorf("weight must be a static [N, K], got %v", w.Shape)
	}
	if len(x.Shape) == 0 || x.Shape.Last() != w.Shape[1] {
		return 0, nil, fmt.Errorf("x %v and weight %v disagree on K", x.Shape, w.Shape)
	}
	out := x.Shape.Clone()
	out[len(out)-1] = w.Shape[0]
	return F32, out, nil
}

func inferReshape(a []*Value, at AttrReader) (DType, Shape, error) {
	raw := at.Ints("shape")
	out := make(Shape, len(raw))
	for i, d := range raw {
		out[i] = Dim(d)
	}
	if err := out.validate(); err != nil {
		return 0, nil, err
	}
	p1, f1, _ := a[0].Shape.Split()
	p2, f2, ok := out.Split()
	symIn, symOut := symOf(a[0].Shape), symOf(out)
	if !ok || p1 != p2 || f1 != f2 || symIn != symOut {
		return 0, nil, fmt.Errorf("cannot reshape %v to %v", a[0].Shape, out)
	}
	return a[0].DType, out, nil
}

func symOf(s Shape) Dim {
	for _, d := range s {
		if d.Symbolic() {
			return d
		}
	}
	return 0
}

func inferRoPE(a []*Value, at AttrReader) (DType, Shape, error) {
	x, pos := a[0], a[1]
	if len(x.Shape) != 3 || x.Shape[0] != T || !isFloat(x) {
		return 0, nil, fmt.Errorf("x must be float [T, heads, headDim], got %v%v", x.DType, x.Shape)
	}
	if pos.DType != I32 || !pos.Shape.Equal(Sh(T)) {
		return 0, nil, fmt.Errorf("positions must be i32[T], got %v%v", pos.DType, pos.Shape)
	}
	rd := at.Int("rotary_dims")
	if rd <= 0 || rd%2 != 0 || Dim(rd) > x.Shape[2] {
		return 0, nil, fmt.Errorf("rotary_dims %d must be even and in (0, %v]", rd, x.Shape[2])
	}
	if th := at.Float("theta"); !(th > 0) {
		return 0, nil, fmt.Errorf("theta must be > 0")
	}
	if s := at.String("style"); s != "neox" && s != "interleaved" {
		return 0, nil, fmt.Errorf("style must be \"neox\" or \"interleaved\", got %q", s)
	}
	return F32, x.Shape.Clone(), nil
}

func inferAttention(a []*Value, at AttrReader) (DType, Shape, error) {
	q, k, v := a[0], a[1], a[2]
	for _, x := range a {
		if len(x.Shape) != 3 || x.Shape[0] != T || !isFloat(x) {
			return 0, nil, fmt.Errorf("q, k, v must be float [T, heads, dim], got %v%v", x.DType, x.Shape)
		}
	}
	if q.Shape[2] != k.Shape[2] {
		return 0, nil, fmt.Errorf("q %v and k %v disagree on head dim", q.Shape, k.Shape)
	}
	if k.Shape[1] != v.Shape[1] || k.Shape[1] == 0 || q.Shape[1]%k.Shape[1] != 0 {
		return 0, nil, fmt.Errorf("query heads %v must be a multiple of kv heads %v (= v heads %v)", q.Shape[1], k.Shape[1], v.Shape[1])
	}
	if err := checkCacheScale(at); err != nil {
		return 0, nil, err
	}
	return F32, Sh(T, q.Shape[1], v.Shape[2]), nil
}

func inferUnary(a []*Value, _ AttrReader) (DType, Shape, error) {
	if !isFloat(a[0]) {
		return 0, nil, fmt.Errorf("operand must be float")
	}
	return F32, a[0].Shape.Clone(), nil
}

func inferBinary(a []*Value, _ AttrReader) (DType, Shape, error) {
	if !isFloat(a[0]) || !isFloat(a[1]) {
		return 0, nil, fmt.Errorf("operands must be float")
	}
	if !a[0].Shape.Equal(a[1].Shape) {
		return 0, nil, fmt.Errorf("shapes differ: %v and %v", a[0].Shape, a[1].Shape)
	}
	return F32, a[0].Shape.Clone(), nil
}

func inferGatherRows(a []*Value, _ AttrReader) (DType, Shape, error) {
	x, rows := a[0], a[1]
	if len(x.Shape) < 1 || x.Shape[0] != T {
		return 0, nil, fmt.Errorf("x must be [T, ...], got %v", x.Shape)
	}
	if rows.DType != I32 || len(rows.Shape) != 1 || !rows.Shape[0].Symbolic() {
		return 0, nil, fmt.Errorf("rows must be i32[S] or i32[T], got %v%v", rows.DType, rows.Shape)
	}
	out := x.Shape.Clone()
	out[0] = rows.Shape[0]
	return x.DType, out, nil
}

func inferConcat(a []*Value, at AttrReader) (DType, Shape, error) {
	if len(a) < 1 {
		return 0, nil, fmt.Errorf("needs at least one arg")
	}
	axis := at.Int("axis")
	first := a[0]
	if axis < 0 || int(axis) >= len(first.Shape) || first.Shape[axis].Symbolic() {
		return 0, nil, fmt.Errorf("axis %d is not a static axis of %v", axis, first.Shape)
	}
	out := first.Shape.Clone()
	out[axis] = 0
	for _, x := range a {
		if x.DType != first.DType || !x.DType.IsFloat() || len(x.Shape) != len(first.Shape) {
			return 0, nil, fmt.Errorf("args must share a float dtype and rank: %v%v vs %v%v", x.DType, x.Shape, first.DType, first.Shape)
		}
		for i, d := range x.Shape {
			if i != int(axis) && d != first.Shape[i] {
				return 0, nil, fmt.Errorf("shapes %v and %v differ outside axis %d", x.Shape, first.Shape, axis)
			}
		}
		out[axis] += x.Shape[axis]
	}
	return first.DType, out, nil
}

// checkCacheScale checks the attributes every attention op shares.
func checkCacheScale(at AttrReader) error {
	if sc := at.Float("scale"); !(sc > 0) {
		return fmt.Errorf("scale must be > 0")
	}
	if at.Int("cache") < 0 {
		return fmt.Errorf("cache index must be >= 0")
	}
	return nil
}

func inferSection(a []*Value, at AttrReader) (DType, Shape, error) {
	x := a[0]
	if !isFloat(x) || len(x.Shape) == 0 || x.Shape.Last().Symbolic() {
		return 0, nil, fmt.Errorf("x must be float with a static last dim, got %v%v", x.DType, x.Shape)
	}
	start, size, d := at.Int("start"), at.Int("size"), int64(x.Shape.Last())
	if start < 0 || size <= 0 || start > d || size > d-start {
		return 0, nil, fmt.Errorf("range [%d, %d) is not inside the last dim %d: empty, or outside [0, %d)", start, start+size, d, d)
	}
	out := x.Shape.Clone()
	out[len(out)-1] = Dim(size)
	return x.DType, out, nil
}
