package cpu

import (
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// Options size a backend. A zero field takes its default.
type Options struct {
	// MaxTokens is the most tokens in one Step; the arena is sized for it.
	// Default runtime.DefaultMaxStepTokens.
	MaxTokens int
	// NumBlocks is the number of blocks in each paged cache, shared by all
	// sequences. Default: enough for runtime.DefaultCacheTokens positions.
	NumBlocks int
	// BlockSize is the number of positions in a cache block. Default
	// runtime.DefaultBlockSize.
	BlockSize int
	// MaxSeqs is the most sequences in one Step and the number of slots of
	// each state cache. Default runtime.DefaultMaxSeqs.
	MaxSeqs int
	// Threads is the number of goroutines the kernels use. Default GOMAXPROCS.
	Threads int
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxTokens < 0 || o.NumBlocks < 0 || o.BlockSize < 0 || o.MaxSeqs < 0 || o.Threads < 0 {
		return o, fmt.Errorf("cpu: negative option in %+v", o)
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = runtime.DefaultMaxStepTokens
	}
	if o.BlockSize == 0 {
		o.BlockSize = runtime.DefaultBlockSize
	}
	if o.NumBlocks == 0 {
		o.NumBlocks = (runtime.DefaultCacheTokens + o.BlockSize - 1) / o.BlockSize
	}
	if o.MaxSeqs == 0 {
		o.MaxSeqs = runtime.DefaultMaxSeqs
	}
	if o.Threads == 0 {
		o.Threads = goruntime.GOMAXPROCS(0)
	}
	const maxI32 = 1<<31 - 1
	if o.NumBlocks > maxI32 || o.BlockSize > maxI32 || o.NumBlocks*o.BlockSize > maxI32 || o.MaxTokens > maxI32 {
		return o, fmt.Errorf("cpu: options %+v: cache positions or MaxTokens overflow int32", o)
	}
	return o, nil
}

// Weight is one plan weight as stored: little-endian bytes, possibly an
// mmapped region of the engine file. The backend never writes Data and
// keeps using it until Close.
type Weight struct {
	DType ir.DType
	Shape []int64
	Data  []byte
}

// Backend runs one plan on the CPU. It implements runtime.Backend.
type Backend struct {
	plan *ir.Plan
	opt  Options

	arena   []float32
	bufs    []tensor    // by plan buffer, sized for MaxTokens
	inputs  []tensor    // by plan input: backend-owned copies of the batch's slices
	binds   []int       // by plan input: which Batch field (bindTokens, ...)
	weights []matrix    // by plan weight, in stored dtype
	wf32    [][]float32 // by plan weight: f32 copies made on demand
	caches  []cache
	kernels []kernel
	outputs map[string]int
	scratch []scratch // by worker
	pool    *pool

	vocab   int  // rows of the smallest embedding table "tokens" indexes; 0 if none
	paged   bool // the plan has paged caches: check block tables
	state   bool // the plan has state caches: check slots
	seen    []bool
	hostSet map[string]bool // named inputs filled by SetInput

	// the current step: T tokens; S = len(LogitRows), the rows S-shaped
	// values hold (S enters a plan only through the logit_rows input)
	batch  *runtime.Batch
	t, s   int
	ran    bool
	closed bool
}

var _ runtime.Backend = (*Backend)(nil)

// cache is the storage of one ir.CacheSpec: one pool per entry, of
// NumBlocks·BlockSize positions (paged kinds) or MaxSeqs slots (state kinds).
// A paged cache is stored in its dtype, f32 (entries) or bf16 (b16; see
// kvPool); state caches are kept in f32 whatever the spec's dtype.
type cache struct {
	spec    ir.CacheSpec
	entries [][]float32
	b16     [][]uint16
}

// scratch is one worker's private memory, sized at New.
type scratch struct {
	w        []float32 // matmul: nTile decoded weight rows
	scores   []float32 // attention: one score per cached position
	acc      []float32 // attention: one output head
	kv       []float32 // qkv_attention: one roped k head before it is cached
	cos, sin []float32 // rope: one token's angles
}

// Input bindings.
const (
	bindTokens = iota
	bindPositions
	bindLogitRows
)

var inputBinds = map[string]int{"tokens": bindTokens, "positions": bindPositions, "logit_rows": bindLogitRows}

// builders compile each supported op; an op missing here is rejected by New.
var builders = map[ir.Op]func(b *Backend, s ir.Step, y tensor) (kernel, error){
	ir.OpEmbedding:  buildEmbedding,
	ir.OpRMSNorm:    buildRMSNorm,
	ir.OpMatMul:     buildMatMul,
	ir.OpRoPE:       buildRoPE,
	ir.OpAttention:  buildAttention,
	ir.OpSiLU:       buildElementwise(ewSiLU),
	ir.OpSigmoid:    buildElementwise(ewSigmoid),
	ir.OpMul:        buildElementwise(ewMul),
	ir.OpAdd:        buildElementwise(ewAdd),
	ir.OpGatherRows: buildGatherRows,
	ir.OpSection:    buildSection,
}

// New binds plan p to its weights (in p.Weights order) and allocates
// everything a Step needs: one arena of ArenaPerT·MaxTokens + ArenaFixed
// bytes, the caches, the workers and their scratch. It validates p and
// rejects ops it has no kernel for, inputs other than tokens, positions and
// logit_rows that are not f32 or i32 [T, ...] (those come from
// Batch.Inputs), and weights whose dtype, shape or size differ from the
// plan's.
// The backend keeps p and the weights' Data; neither may change until Close.
func New(p *ir.Plan, weights []Weight, opt Options) (*Backend, error) {
	if p == nil {
		return nil, errors.New("cpu: nil plan")
	}
	if err := kern.EnvError(); err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	for i, s := range p.Steps {
		if builders[s.Op] == nil {
			return nil, fmt.Errorf("cpu: step %d: op %v not supported", i, s.Op)
		}
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("cpu: %w", err)
	}
	b := &Backend{plan: p, opt: opt, outputs: map[string]int{}, seen: make([]bool, opt.MaxSeqs)}
	if err := b.bindWeights(weights); err != nil {
		return nil, err
	}
	if err := b.bindInputs(); err != nil {
		return nil, err
	}
	if err := b.allocArena(); err != nil {
		return nil, err
	}
	if err := b.allocCaches(); err != nil {
		return nil, err
	}
	b.scratch = make([]scratch, opt.Threads)
	for i, s := range p.Steps {
		k, err := builders[s.Op](b, s, b.bufs[s.Out])
		if err != nil {
			return nil, fmt.Errorf("cpu: step %d (%v): %w", i, s.Op, err)
		}
		b.kernels = append(b.kernels, k)
	}
	for _, o := range p.Outputs {
		if _, dup := b.outputs[o.Name]; dup {
			return nil, fmt.Errorf("cpu: output %q declared twice", o.Name)
		}
		if dt := p.Buffers[o.Buffer].DType; dt != ir.F32 && dt != ir.I32 {
			return nil, fmt.Errorf("cpu: output %q: dtype %v, want f32 or i32", o.Name, dt)
		}
		b.outputs[o.Name] = o.Buffer
	}
	b.pool = newPool(opt.Threads)
	return b, nil
}

func (b *Backend) bindWeights(ws []Weight) error {
	p := b.plan
	if len(ws) != len(p.Weights) {
		return fmt.Errorf("cpu: plan has %d weights, got %d", len(p.Weights), len(ws))
	}
	b.weights = make([]matrix, len(ws))
	b.wf32 = make([][]float32, len(ws))
	for i, w := range ws {
		pw := p.Weights[i]
		if w.DType != pw.DType {
			return fmt.Errorf("cpu: weight %q: dtype %v, plan wants %v", pw.Name, w.DType, pw.DType)
		}
		same := len(w.Shape) == len(pw.Shape)
		for j := 0; same && j < len(w.Shape); j++ {
			same = w.Shape[j] == int64(pw.Shape[j])
		}
		if !same {
			return fmt.Errorf("cpu: weight %q: shape %v, plan wants %v", pw.Name, w.Shape, pw.Shape)
		}
		n, _ := pw.Shape.Elems(0, 0)
		if int64(len(w.Data)) != n*int64(w.DType.Size()) {
			return fmt.Errorf("cpu: weight %q: %d bytes, want %d for %v%v", pw.Name, len(w.Data), n*int64(w.DType.Size()), w.DType, pw.Shape)
		}
		m := matrix{dt: w.DType, rows: 1, cols: int(n)}
		if len(pw.Shape) >= 1 {
			m.cols = int(pw.Shape.Last())
			if m.cols > 0 {
				m.rows = int(n) / m.cols
			}
		}
		switch w.DType {
		case ir.F32:
			m.f32 = viewF32(w.Data)
		case ir.BF16, ir.F16:
			m.u16 = viewU16(w.Data)
		case ir.I8, ir.U8, ir.F8E4M3: // read only by matmul_q (quant.go)
			m.u8 = w.Data
		default:
			return fmt.Errorf("cpu: weight %q: dtype %v not supported", pw.Name, w.DType)
		}
		b.weights[i] = m
	}
	return nil
}

func (b *Backend) bindInputs() error {
	for _, in := range b.plan.Inputs {
		bind, ok := inputBinds[in.Name]
		if !ok {
			if err := b.bindNamed(in); err != nil {
				return err
			}
			continue
		}
		want := ir.Sh(ir.T)
		if bind == bindLogitRows && len(in.Shape) == 1 && in.Shape[0] == ir.S {
			want = ir.Sh(ir.S)
		}
		if in.DType != ir.I32 || !in.Shape.Equal(want) {
			return fmt.Errorf("cpu: input %q: type %v%v, want i32%v", in.Name, in.DType, in.Shape, want)
		}
		if slices.Contains(b.binds, bind) {
			return fmt.Errorf("cpu: input %q declared twice", in.Name)
		}
		b.inputs = append(b.inputs, tensor{dt: ir.I32, shape: in.Shape, i32: make([]int32, b.opt.MaxTokens)})
		b.binds = append(b.binds, bind)
	}
	return nil
}

func (b *Backend) allocArena() error {
	p, maxT := b.plan, int64(b.opt.MaxTokens)
	if p.ArenaPerT < 0 || p.ArenaFixed < 0 || p.ArenaFixed > 1<<61 || p.ArenaPerT > (1<<61)/maxT {
		return fmt.Errorf("cpu: arena %d·T + %d bytes is out of range", p.ArenaPerT, p.ArenaFixed)
	}
	size := p.ArenaPerT*maxT + p.ArenaFixed
	b.arena = make([]float32, (size+3)/4)
	b.bufs = make([]tensor, len(p.Buffers))
	for i, buf := range p.Buffers {
		root := p.Buffers[p.Root(i)]
		off := root.OffsetPerT*maxT + root.OffsetFixed
		n, ok := buf.Shape.Elems(maxT, maxT)
		if !ok || off < 0 || off%4 != 0 || off > size || n > (size-off)/4 || buf.DType.Size() != 4 {
			return fmt.Errorf("cpu: buffer %d (%v%v): does not fit the arena", i, buf.DType, buf.Shape)
		}
		view := b.arena[off/4 : off/4+n]
		t := tensor{dt: buf.DType, shape: buf.Shape}
		switch buf.DType {
		case ir.F32:
			t.f32 = view
		case ir.I32:
			t.i32 = i32View(view)
		default:
			return fmt.Errorf("cpu: buffer %d: dtype %v not supported", i, buf.DType)
		}
		b.bufs[i] = t
	}
	return nil
}

func (b *Backend) allocCaches() error {
	o := b.opt
	for i, spec := range b.plan.Caches {
		c := cache{spec: spec}
		slots := int64(o.MaxSeqs)
		bf16 := false
		if spec.Kind.Paged() {
			slots = int64(o.NumBlocks) * int64(o.BlockSize)
			b.paged = true
			switch spec.DType {
			case ir.F32:
			case ir.BF16:
				bf16 = true
			default:
				return fmt.Errorf("cpu: cache %d (%v, layer %d): dtype %v is not supported (paged caches are f32 or bf16)", i, spec.Kind, spec.Layer, spec.DType)
			}
		} else {
			b.state = true
		}
		for _, e := range spec.Entries {
			n, ok := e.Elems(0, 0)
			if !ok || n > (1<<50)/slots {
				return fmt.Errorf("cpu: cache %d (%v, layer %d): entry %v is too large", i, spec.Kind, spec.Layer, e)
			}
			if bf16 {
				c.b16 = append(c.b16, make([]uint16, slots*n))
			} else {
				c.entries = append(c.entries, make([]float32, slots*n))
			}
		}
		b.caches = append(b.caches, c)
	}
	return nil
}

// operand returns a step argument as f32 or i32 storage. A weight read as an
// activation is widened to an f32 copy once.
func (b *Backend) operand(r ir.Ref) tensor {
	switch r.Kind {
	case ir.RefBuffer:
		return b.bufs[r.Index]
	case ir.RefInput:
		return b.inputs[r.Index]
	}
	pw := b.plan.Weights[r.Index]
	if b.wf32[r.Index] == nil {
		m := b.weights[r.Index]
		if m.dt == ir.F32 {
			b.wf32[r.Index] = m.f32
		} else {
			f := make([]float32, len(m.u16))
			for i := 0; i < m.rows; i++ {
				m.rowInto(i, f[i*m.cols:])
			}
			b.wf32[r.Index] = f
		}
	}
	return tensor{dt: ir.F32, shape: pw.Shape, f32: b.wf32[r.Index]}
}

// matrixOf returns a static 2-D float operand in its stored dtype.
func (b *Backend) matrixOf(r ir.Ref) (matrix, error) {
	if r.Kind == ir.RefWeight {
		m := b.weights[r.Index]
		if len(b.plan.Weights[r.Index].Shape) != 2 {
			return m, fmt.Errorf("weight %q is not 2-D", b.plan.Weights[r.Index].Name)
		}
		return m, nil
	}
	t := b.operand(r)
	if len(t.shape) != 2 || t.shape[0].Symbolic() || t.dt != ir.F32 {
		return matrix{}, fmt.Errorf("operand %v: %v%v is not a static f32 matrix", r, t.dt, t.shape)
	}
	return matrix{rows: int(t.shape[0]), cols: int(t.shape[1]), dt: ir.F32, f32: t.f32}, nil
}

// elems returns the number of elements of s in the current step.
func (b *Backend) elems(s ir.Shape) int {
	n, _ := s.Elems(int64(b.t), int64(b.s))
	return int(n)
}

func buildEmbedding(b *Backend, s ir.Step, y tensor) (kernel, error) {
	table, err := b.matrixOf(s.Args[0])
	if err != nil {
		return nil, err
	}
	ids := b.operand(s.Args[1])
	if s.Args[1].Kind == ir.RefInput && b.binds[s.Args[1].Index] == bindTokens {
		if b.vocab == 0 || table.rows < b.vocab {
			b.vocab = table.rows
		}
	}
	return &embeddingK{table: table, ids: ids, y: y.f32}, nil
}

func buildRMSNorm(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x := b.operand(s.Args[0])
	w := b.operand(s.Args[1]).f32
	if s.Attr().Bool("unit_offset") {
		w1 := make([]float32, len(w))
		for i, v := range w {
			w1[i] = 1 + v
		}
		w = w1
	}
	return &rmsNormK{x: x, w: w, y: y.f32, eps: float32(s.Attr().Float("eps")), d: int(x.shape.Last())}, nil
}

// sectionK copies a range of the last dim.
type sectionK struct {
	x           tensor
	y           []float32
	d           int // x's last dim
	start, size int
}

func buildSection(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x := b.operand(s.Args[0])
	if x.dt != ir.F32 {
		return nil, fmt.Errorf("x has dtype %v", x.dt)
	}
	return &sectionK{x: x, y: y.f32, d: int(x.shape.Last()), start: int(s.Attr().Int("start")), size: int(s.Attr().Int("size"))}, nil
}

func (k *sectionK) exec(b *Backend) error {
	rows := b.elems(k.x.shape) / k.d
	for r := 0; r < rows; r++ {
		copy(k.y[r*k.size:(r+1)*k.size], k.x.f32[r*k.d+k.start:r*k.d+k.start+k.size])
	}
	return nil
}

func buildMatMul(b *Backend, s ir.Step, y tensor) (kernel, error) {
	w, err := b.matrixOf(s.Args[1])
	if err != nil {
		return nil, err
	}
	k := &matmulK{b: b, x: b.operand(s.Args[0]), w: w, y: y.f32, k: w.cols, n: w.rows}
	if w.dt != ir.F32 {
		for i := range b.scratch {
			if len(b.scratch[i].w) < nTile*w.cols {
				b.scratch[i].w = make([]float32, nTile*w.cols)
			}
		}
	}
	return k, nil
}

func buildRoPE(b *Backend, s ir.Step, y tensor) (kernel, error) {
	k := newRoPE(b, b.operand(s.Args[0]), b.operand(s.Args[1]), y.f32, s.Attr())
	for i := range b.scratch {
		if len(b.scratch[i].cos) < len(k.inv) {
			b.scratch[i].cos = make([]float32, len(k.inv))
			b.scratch[i].sin = make([]float32, len(k.inv))
		}
	}
	return k, nil
}

func buildAttention(b *Backend, s ir.Step, y tensor) (kernel, error) {
	q, kk, v := b.operand(s.Args[0]), b.operand(s.Args[1]), b.operand(s.Args[2])
	ci := int(s.Attr().Int("cache"))
	c := b.caches[ci]
	hkv, d, dv := kk.shape[1], kk.shape[2], v.shape[2]
	if c.spec.Kind != ir.CacheKV || len(c.spec.Entries) != 2 ||
		!c.spec.Entries[0].Equal(ir.Sh(hkv, d)) || !c.spec.Entries[1].Equal(ir.Sh(hkv, dv)) {
		return nil, fmt.Errorf("cache %d (%v %v) does not hold k [%v, %v] and v [%v, %v]", ci, c.spec.Kind, c.spec.Entries, hkv, d, hkv, dv)
	}
	ctx := b.opt.NumBlocks * b.opt.BlockSize
	for i := range b.scratch {
		if len(b.scratch[i].scores) < ctx {
			b.scratch[i].scores = make([]float32, ctx)
		}
		if len(b.scratch[i].acc) < int(dv) {
			b.scratch[i].acc = make([]float32, dv)
		}
	}
	return &attentionK{
		b: b, q: q, k: kk, v: v, y: y.f32,
		hq: int(q.shape[1]), hkv: int(hkv), d: int(d), dv: int(dv),
		scale: float32(s.Attr().Float("scale")),
		kc:    c.pool(0), vc: c.pool(1),
	}, nil
}

func buildElementwise(op int) func(*Backend, ir.Step, tensor) (kernel, error) {
	return func(b *Backend, s ir.Step, y tensor) (kernel, error) {
		k := &elementwiseK{op: op, a: b.operand(s.Args[0]), y: y.f32}
		if len(s.Args) > 1 {
			k.b = b.operand(s.Args[1])
		}
		return k, nil
	}
}

func buildGatherRows(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x := b.operand(s.Args[0])
	if x.dt != ir.F32 && x.dt != ir.I32 {
		return nil, fmt.Errorf("x has dtype %v", x.dt)
	}
	row, _ := x.shape[1:].Elems(0, 0)
	return &gatherRowsK{x: x, rows: b.operand(s.Args[1]), y: y, row: int(row)}, nil
}

// Step runs the plan once over bt. A malformed batch is reported before
// anything runs, so the caches are left as they were.
func (b *Backend) Step(bt *runtime.Batch) error {
	if b.closed {
		return errClosed
	}
	b.ran = false
	if err := b.check(bt); err != nil {
		return err
	}
	b.batch, b.t, b.s = bt, len(bt.Tokens), len(bt.LogitRows)
	defer func() { b.batch = nil }()
	if err := b.checkNamed(bt); err != nil {
		return err
	}
	for i, in := range b.inputs {
		switch b.binds[i] {
		case bindTokens:
			copy(in.i32, bt.Tokens)
		case bindPositions:
			copy(in.i32, bt.Positions)
		case bindLogitRows:
			copy(in.i32, bt.LogitRows)
		case bindHost:
			if v, ok := bt.Inputs[b.plan.Inputs[i].Name]; ok {
				copy(in.f32, v.F32)
				copy(in.i32, v.I32)
			}
		}
	}
	for i, k := range b.kernels {
		if err := k.exec(b); err != nil {
			return fmt.Errorf("cpu: step %d (%v): %w", i, b.plan.Steps[i].Op, err)
		}
	}
	b.ran = true
	return nil
}

var errClosed = errors.New("cpu: backend is closed")

// Output returns an output of the last successful Step, with T resolved to
// the step's tokens and S to its logit rows; the data is the backend's and
// valid until the next Step.
func (b *Backend) Output(name string) ([]float32, []int, error) {
	if b.closed {
		return nil, nil, errClosed
	}
	i, ok := b.outputs[name]
	if !ok {
		return nil, nil, fmt.Errorf("cpu: no output %q", name)
	}
	if !b.ran {
		return nil, nil, fmt.Errorf("cpu: output %q: no successful Step", name)
	}
	buf := b.bufs[i]
	shape := make([]int, len(buf.shape))
	for j, d := range buf.shape {
		switch d {
		case ir.T:
			shape[j] = b.t
		case ir.S:
			shape[j] = b.s
		default:
			shape[j] = int(d)
		}
	}
	n := b.elems(buf.shape)
	if buf.dt == ir.I32 { // i32 outputs (expert ids) are returned converted to f32
		f := make([]float32, n)
		for j, v := range buf.i32[:n] {
			f[j] = float32(v)
		}
		return f, shape, nil
	}
	return buf.f32[:n:n], shape, nil
}

// Close stops the workers and drops the arena and caches. Closing twice is
// harmless.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.pool.close()
	b.arena, b.bufs, b.caches, b.kernels, b.scratch, b.weights, b.wf32 = nil, nil, nil, nil, nil, nil, nil
	return nil
}
