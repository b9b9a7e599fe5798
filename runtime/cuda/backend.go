package cuda

import (
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"unsafe"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
)

// Options size a backend. A zero field takes its default.
type Options struct {
	Device    int // CUDA device ordinal
	MaxTokens int // most tokens in one Step; default runtime.DefaultMaxStepTokens
	NumBlocks int // blocks in each paged cache; default enough for runtime.DefaultCacheTokens
	BlockSize int // positions per block; default runtime.DefaultBlockSize
	MaxSeqs   int // most sequences in one Step; default runtime.DefaultMaxSeqs
	// MaxContext is the most positions one sequence may hold (default
	// NumBlocks·BlockSize). It sizes the block tables and the decode
	// splits, which a captured graph launches whatever the context.
	MaxContext int
	// NoGraphs disables CUDA graphs (every launch goes through
	// cuLaunchKernel); GraphSizes are the decode batch sizes replayed as
	// graphs, each captured on its first use (default every size from 1
	// to min(MaxSeqs, 256): continuous batching's batch size changes step
	// by step, and a size without a graph pays ~300 launches from the host).
	NoGraphs   bool
	GraphSizes []int
}

func (o Options) withDefaults() (Options, error) {
	if o.MaxTokens < 0 || o.NumBlocks < 0 || o.BlockSize < 0 || o.MaxSeqs < 0 || o.Device < 0 {
		return o, fmt.Errorf("cuda: negative option in %+v", o)
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
	if o.MaxSeqs > o.MaxTokens {
		o.MaxSeqs = o.MaxTokens
	}
	if o.MaxContext <= 0 || o.MaxContext > o.NumBlocks*o.BlockSize {
		o.MaxContext = o.NumBlocks * o.BlockSize
	}
	if o.GraphSizes == nil {
		for n := 1; n <= 256 && n <= o.MaxSeqs; n++ {
			o.GraphSizes = append(o.GraphSizes, n)
		}
	}
	const maxI32 = 1<<31 - 1
	if int64(o.NumBlocks)*int64(o.BlockSize) > maxI32 || o.MaxTokens > 1<<24 {
		return o, fmt.Errorf("cuda: options %+v: cache positions or MaxTokens too large", o)
	}
	return o, nil
}

// Weight is one plan weight as stored (little-endian bytes).
type Weight struct {
	DType ir.DType
	Shape []int64
	Data  []byte
}

// launchRT is one launch ready to go: its function and its parameter
// block (vals holds the values, ptrs points at them, both pinned).
type launchRT struct {
	l    abi.Launch
	step ir.Step
	fn   uintptr
	vals []uint64
	ptrs []unsafe.Pointer
}

// Backend runs one plan on one GPU. It implements runtime.Backend.
type Backend struct {
	d      *driver
	dev    int32
	ctx    uintptr
	stream uintptr
	mod    uintptr
	plan   *ir.Plan
	opt    Options
	kern   *engine.Kernels

	launches []launchRT
	allocs   []uint64
	a        addrs
	lay      layout
	meta     []int32
	metaDev  uint64
	argmax   uintptr // the argmax kernel, 0 if none
	argOut   uint64  // argmax results: i32[MaxTokens]
	cand     candRT  // the sampling-candidates kernel and its buffers (candidates.go)
	outputs  map[string]int
	host     map[int][]float32      // output buffer -> its host copy
	pinned   map[int]unsafe.Pointer // output buffer -> page-locked memory behind host
	graphs   map[int][2]uintptr     // decode T -> graph, exec
	pinner   goruntime.Pinner

	vocab        int
	rowsPerToken bool
	splits       int
	maxBlocks    int

	// Image is the arch of the image loaded ("sm_90a", "compute_90", ...),
	// Name the device's name and CC its compute capability (major·10+minor).
	Image, Name string
	CC          int

	t, s        int
	ran, closed bool
	hostValid   map[int]bool
	named       []namedInput // inputs from Batch.Inputs (inputs.go)
	st          stateRT      // state-cache slots (state.go)
}

var _ runtime.Backend = (*Backend)(nil)

// FromEngine makes a CUDA backend for an opened engine built with
// `pioc build --target cuda`.
func FromEngine(e *engine.Engine, opt Options) (*Backend, error) {
	p := e.Meta.Plan
	if p == nil {
		return nil, fmt.Errorf("cuda: engine has no plan")
	}
	ws := make([]Weight, len(p.Weights))
	for i := range p.Weights {
		j := e.PlanWeights[i]
		we := e.Weights[j]
		ws[i] = Weight{DType: we.DType, Shape: we.Shape, Data: e.WeightData(j)}
	}
	return New(p, ws, e.Meta.Kernels, opt)
}

// ErrNoKernels is returned when an engine carries no CUDA kernels.
var ErrNoKernels = errors.New("engine has no CUDA kernels: rebuild it with pioc build --target cuda")

// prepare checks everything that needs no GPU: the plan, the launch table
// (every step launched, every parameter in range) and the weights.
func prepare(p *ir.Plan, weights []Weight, k *engine.Kernels) ([]launchRT, error) {
	if p == nil {
		return nil, errors.New("cuda: nil plan")
	}
	if k == nil {
		return nil, fmt.Errorf("cuda: %w", ErrNoKernels)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	if len(k.Images) == 0 {
		return nil, fmt.Errorf("cuda: the engine's kernels section has no images")
	}
	if k.TileTokens <= 0 || k.SplitSize <= 0 {
		return nil, fmt.Errorf("cuda: bad tile %d or split size %d", k.TileTokens, k.SplitSize)
	}
	launched := make([]bool, len(p.Steps))
	var ls []launchRT
	for _, l := range k.Launches {
		if err := checkLaunch(p, &l, len(p.Caches)); err != nil {
			return nil, fmt.Errorf("cuda: %w", err)
		}
		launched[l.Step] = true
		ls = append(ls, launchRT{l: l, step: p.Steps[l.Step], vals: make([]uint64, len(l.Params)), ptrs: make([]unsafe.Pointer, len(l.Params))})
	}
	if i := slices.Index(launched, false); i >= 0 {
		return nil, fmt.Errorf("cuda: step %d (%v) has no kernel launch", i, p.Steps[i].Op)
	}
	if len(weights) != len(p.Weights) {
		return nil, fmt.Errorf("cuda: plan has %d weights, got %d", len(p.Weights), len(weights))
	}
	for i, w := range weights {
		pw := p.Weights[i]
		n, _ := pw.Shape.Elems(0, 0)
		if w.DType != pw.DType || int64(len(w.Data)) != n*int64(w.DType.Size()) {
			return nil, fmt.Errorf("cuda: weight %q: %v with %d bytes, plan wants %v%v", pw.Name, w.DType, len(w.Data), pw.DType, pw.Shape)
		}
	}
	for i, c := range p.Caches {
		if !pagedCache(c) && !isStateCache(c) { // latent.go, state.go
			return nil, fmt.Errorf("cuda: cache %d: kind %v is not supported (paged KV, latent and f32 state only)", i, c.Kind)
		}
	}
	return ls, nil
}

// New loads the driver, picks the engine's image for the device, puts the
// weights on it and allocates the arena, caches and step metadata.
func New(p *ir.Plan, weights []Weight, k *engine.Kernels, opt Options) (_ *Backend, err error) {
	ls, err := prepare(p, weights, k)
	if err != nil {
		return nil, err
	}
	if opt, err = opt.withDefaults(); err != nil {
		return nil, err
	}
	d, err := loadDriver()
	if err != nil {
		return nil, fmt.Errorf("cuda: %w", err)
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	b := &Backend{d: d, plan: p, opt: opt, kern: k, launches: ls, outputs: map[string]int{}, host: map[int][]float32{}, pinned: map[int]unsafe.Pointer{},
		hostValid: map[int]bool{}, graphs: map[int][2]uintptr{}}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	var n int32
	if err := d.check(d.cuDeviceGetCount(&n), "cuDeviceGetCount"); err != nil {
		return nil, err
	}
	if opt.Device >= int(n) {
		return nil, fmt.Errorf("cuda: device %d requested, %d present", opt.Device, n)
	}
	if err := d.check(d.cuDeviceGet(&b.dev, int32(opt.Device)), "cuDeviceGet"); err != nil {
		return nil, err
	}
	var major, minor int32
	d.cuDeviceGetAttribute(&major, attrComputeCapabilityMajor, b.dev)
	d.cuDeviceGetAttribute(&minor, attrComputeCapabilityMinor, b.dev)
	b.CC = int(major*10 + minor)
	name := make([]byte, 256)
	if d.cuDeviceGetName(&name[0], int32(len(name)), b.dev) == 0 {
		b.Name = cString(&name[0])
	}
	if err := d.check(d.cuDevicePrimaryCtxRetain(&b.ctx, b.dev), "cuDevicePrimaryCtxRetain"); err != nil {
		return nil, err
	}
	if err := d.check(d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		return nil, err
	}
	if err := d.check(d.cuStreamCreate(&b.stream, 0), "cuStreamCreate"); err != nil {
		return nil, err
	}
	if err := b.loadModule(int(major), int(minor)); err != nil {
		return nil, err
	}
	if err := b.allocate(weights); err != nil {
		return nil, err
	}
	for _, o := range p.Outputs {
		if p.Buffers[o.Buffer].DType != ir.F32 {
			return nil, fmt.Errorf("cuda: output %q: dtype %v, want f32", o.Name, p.Buffers[o.Buffer].DType)
		}
		b.outputs[o.Name] = o.Buffer
	}
	return b, nil
}

// loadModule loads the image chosen for the device and resolves every
// kernel of the launch table.
func (b *Backend) loadModule(major, minor int) error {
	imgs := b.kern.Images
	i, ok := abi.SelectImage(imgs, major, minor)
	if !ok {
		var archs []string
		for _, im := range imgs {
			archs = append(archs, im.Arch)
		}
		return fmt.Errorf("cuda: no image for compute capability %d.%d (%s) among %v", major, minor, b.Name, archs)
	}
	data := imgs[i].Data
	if imgs[i].IsPTX() {
		data = append(slices.Clip(data), 0) // the driver wants NUL-terminated PTX
	}
	b.Image = imgs[i].Arch
	if err := b.d.check(b.d.cuModuleLoadData(&b.mod, unsafe.Pointer(&data[0])), "cuModuleLoadData "+b.Image); err != nil {
		return err
	}
	fns := map[string]uintptr{}
	fn := func(name string) (uintptr, error) {
		if f, ok := fns[name]; ok {
			return f, nil
		}
		var f uintptr
		cname := append([]byte(name), 0)
		if err := b.d.check(b.d.cuModuleGetFunction(&f, b.mod, &cname[0]), "cuModuleGetFunction "+name); err != nil {
			return 0, err
		}
		fns[name] = f
		return f, nil
	}
	for i := range b.launches {
		f, err := fn(b.launches[i].l.Kernel)
		if err != nil {
			return err
		}
		b.launches[i].fn = f
	}
	if b.kern.Argmax != "" {
		f, err := fn(b.kern.Argmax)
		if err != nil {
			return err
		}
		b.argmax = f
	}
	if b.kern.Candidates != "" {
		f, err := fn(b.kern.Candidates)
		if err != nil {
			return err
		}
		b.cand.fn = f
	}
	return nil
}

func (b *Backend) alloc(n uint64, what string) (uint64, error) {
	var p uint64
	if err := b.d.check(b.d.cuMemAlloc(&p, max(n, 256)), fmt.Sprintf("cuMemAlloc %d bytes for %s", n, what)); err != nil {
		return 0, err
	}
	b.allocs = append(b.allocs, p)
	return p, nil
}

// allocate puts the weights on the device and allocates the arena, the
// caches, the step metadata and the decode workspace.
func (b *Backend) allocate(weights []Weight) error {
	p, o, d := b.plan, b.opt, b.d
	b.a.weights = make([]uint64, len(weights))
	for i, w := range weights {
		ptr, err := b.alloc(uint64(len(w.Data)), p.Weights[i].Name)
		if err != nil {
			return err
		}
		if len(w.Data) > 0 {
			if err := d.check(d.cuMemcpyHtoD(ptr, unsafe.Pointer(&w.Data[0]), uint64(len(w.Data))), "upload "+p.Weights[i].Name); err != nil {
				return err
			}
		}
		b.a.weights[i] = ptr
	}
	maxT := int64(o.MaxTokens)
	if p.ArenaPerT < 0 || p.ArenaFixed < 0 || p.ArenaPerT > (1<<50)/maxT || p.ArenaFixed > 1<<50 {
		return fmt.Errorf("cuda: arena %d·T + %d bytes is out of range", p.ArenaPerT, p.ArenaFixed)
	}
	arena, err := b.alloc(uint64(p.ArenaPerT*maxT+p.ArenaFixed), "the arena")
	if err != nil {
		return err
	}
	b.a.buffers = make([]uint64, len(p.Buffers))
	for i := range p.Buffers {
		r := p.Buffers[p.Root(i)]
		b.a.buffers[i] = arena + uint64(r.OffsetPerT*maxT+r.OffsetFixed)
	}
	slots := uint64(o.NumBlocks) * uint64(o.BlockSize)
	for i, c := range p.Caches {
		var pools [2]uint64
		for j, e := range c.Entries {
			n, _ := e.Elems(0, 0)
			ptr, err := b.alloc(cacheRows(c, slots, o)*uint64(n)*uint64(c.DType.Size()), fmt.Sprintf("cache %d entry %d", i, j))
			if err != nil {
				return err
			}
			pools[j] = ptr
		}
		b.a.cacheK, b.a.cacheV = append(b.a.cacheK, pools[0]), append(b.a.cacheV, pools[1])
	}
	if err := b.allocState(); err != nil {
		return err
	}
	b.maxBlocks = (o.MaxContext + o.BlockSize - 1) / o.BlockSize
	b.lay = layout{maxT: o.MaxTokens, maxSeqs: o.MaxSeqs, maxBlocks: b.maxBlocks}
	b.meta = make([]int32, b.lay.size())
	if b.metaDev, err = b.alloc(uint64(4*len(b.meta)), "step metadata"); err != nil {
		return err
	}
	at := func(off int) uint64 { return b.metaDev + uint64(4*off) }
	b.a.positions, b.a.seqOfToken, b.a.tiles, b.a.blockTables = at(b.lay.positions()), at(b.lay.seqOfToken()), at(b.lay.tiles()), at(b.lay.blockTables())
	b.a.maxBlocks, b.a.blockSize = int32(b.maxBlocks), int32(o.BlockSize)
	for _, in := range p.Inputs {
		switch {
		case in.Name == "tokens" && in.DType == ir.I32:
			b.a.inputs = append(b.a.inputs, at(b.lay.tokens()))
		case in.Name == "positions" && in.DType == ir.I32:
			b.a.inputs = append(b.a.inputs, at(b.lay.positions()))
		case in.Name == "logit_rows" && in.DType == ir.I32:
			b.a.inputs = append(b.a.inputs, at(b.lay.logitRows()))
			b.rowsPerToken = len(in.Shape) == 1 && in.Shape[0] == ir.T
		default:
			dev, err := b.bindNamed(in)
			if err != nil {
				return err
			}
			b.a.inputs = append(b.a.inputs, dev)
		}
	}
	// Decode splits cover a whole sequence's worth of cache, so a captured
	// graph serves every context length.
	b.splits = (b.maxBlocks*o.BlockSize + int(b.kern.SplitSize) - 1) / int(b.kern.SplitSize)
	var ws int64
	var floats uint64 // a row-bounded launch's scratch (split-K matmul): Workspace floats a row, MaxRows rows
	for _, l := range b.launches {
		switch {
		case seqWork(&l.l): // state.go
		case l.l.MaxRows > 0:
			floats = max(floats, uint64(l.l.Workspace)*uint64(min(l.l.MaxRows, o.MaxTokens)))
		default:
			ws = max(ws, l.l.Workspace)
		}
	}
	if floats = max(floats, workspaceFloats(ws, o.MaxSeqs, b.splits, o.MaxTokens)); floats > 0 {
		if b.a.workspace, err = b.alloc(floats*4, "the workspace"); err != nil {
			return err
		}
	}
	if b.argOut, err = b.alloc(uint64(4*o.MaxTokens), "argmax results"); err != nil {
		return err
	}
	for _, s := range p.Steps {
		if s.Op == ir.OpEmbedding && len(s.Args) == 2 && s.Args[1].Kind == ir.RefInput && p.Inputs[s.Args[1].Index].Name == "tokens" {
			if s.Args[0].Kind == ir.RefWeight {
				v := int(p.Weights[s.Args[0].Index].Shape[0])
				if b.vocab == 0 || v < b.vocab {
					b.vocab = v
				}
			}
		}
	}
	for i := range b.launches {
		lr := &b.launches[i]
		for j := range lr.vals {
			lr.ptrs[j] = unsafe.Pointer(&lr.vals[j])
		}
		if len(lr.vals) > 0 {
			b.pinner.Pin(&lr.vals[0])
			b.pinner.Pin(&lr.ptrs[0])
		}
	}
	return nil
}

// Step runs the plan once over bt. A malformed batch is reported before
// anything runs.
func (b *Backend) Step(bt *runtime.Batch) error {
	if b.closed {
		return errClosed
	}
	b.ran = false
	clear(b.hostValid)
	if err := checkBatch(bt, b.opt.MaxTokens, b.opt.MaxSeqs, b.opt.NumBlocks, b.opt.BlockSize, b.maxBlocks, b.vocab, b.rowsPerToken, len(b.plan.Caches) > 0); err != nil {
		return err
	}
	if err := b.checkNamed(bt); err != nil {
		return err
	}
	if err := b.checkState(bt); err != nil {
		return err
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	d := b.d
	if err := d.check(d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		return err
	}
	if err := b.uploadNamed(bt); err != nil {
		return err
	}
	tiles := b.lay.fill(b.meta, bt, int(b.kern.TileTokens))
	if err := d.check(d.cuMemcpyHtoD(b.metaDev, unsafe.Pointer(&b.meta[0]), uint64(4*len(b.meta))), "upload step metadata"); err != nil {
		return err
	}
	if err := b.uploadState(); err != nil {
		return err
	}
	b.t, b.s = len(bt.Tokens), len(bt.LogitRows)
	decode := len(bt.Seqs) == b.t
	dyn := dynamic{t: int32(b.t), s: int32(b.s), splits: int32(b.splits)}
	if decode && !b.opt.NoGraphs && slices.Contains(b.opt.GraphSizes, b.t) && b.s == b.t {
		if err := b.runGraph(dyn); err != nil {
			return err
		}
	} else if err := b.runLaunches(dyn, tiles, decode); err != nil {
		return err
	}
	if err := d.check(d.cuStreamSynchronize(b.stream), "step"); err != nil {
		return err
	}
	b.ran = true
	b.advanceState(bt)
	return nil
}

// runLaunches issues every launch of the step on the stream.
func (b *Backend) runLaunches(dyn dynamic, tiles int, decode bool) error {
	for i := range b.launches {
		lr := &b.launches[i]
		if !lr.l.Runs(int(dyn.t), int(dyn.s), decode) {
			continue
		}
		g, ok := grid(&lr.l, int64(dyn.t), int64(dyn.s), int64(tiles), int64(dyn.splits))
		if !ok {
			continue
		}
		pack(&lr.l, lr.step, &b.a, dyn, lr.vals)
		var params unsafe.Pointer
		if len(lr.ptrs) > 0 {
			params = unsafe.Pointer(&lr.ptrs[0])
		}
		r := b.d.cuLaunchKernel(lr.fn, g[0], g[1], g[2], uint32(lr.l.Block), 1, 1, 0, b.stream, params, nil)
		if err := b.d.check(r, fmt.Sprintf("launch %s (step %d, %v)", lr.l.Kernel, lr.l.Step, lr.step.Op)); err != nil {
			return err
		}
	}
	return nil
}

// runGraph replays the decode graph for this batch size, capturing it on
// first use. Parameters (T, S and every address) are baked into the graph;
// the step metadata it reads is uploaded before each replay.
func (b *Backend) runGraph(dyn dynamic) error {
	d := b.d
	g, ok := b.graphs[int(dyn.t)]
	if !ok {
		const captureThreadLocal = 1
		if err := d.check(d.cuStreamBeginCapture(b.stream, captureThreadLocal), "cuStreamBeginCapture"); err != nil {
			return err
		}
		lerr := b.runLaunches(dyn, 0, true)
		var graph uintptr
		if err := d.check(d.cuStreamEndCapture(b.stream, &graph), "cuStreamEndCapture"); err != nil {
			return err
		}
		if lerr != nil {
			d.cuGraphDestroy(graph)
			return lerr
		}
		var exec uintptr
		if err := d.check(d.cuGraphInstantiate(&exec, graph, 0), "cuGraphInstantiate"); err != nil {
			d.cuGraphDestroy(graph)
			return err
		}
		g = [2]uintptr{graph, exec}
		b.graphs[int(dyn.t)] = g
	}
	return d.check(d.cuGraphLaunch(g[1], b.stream), "cuGraphLaunch")
}

var errClosed = errors.New("cuda: backend is closed")

// Output copies an output of the last successful Step to the host, with T
// resolved to the step's tokens and S to its logit rows.
func (b *Backend) Output(name string) ([]float32, []int, error) {
	if b.closed {
		return nil, nil, errClosed
	}
	i, ok := b.outputs[name]
	if !ok {
		return nil, nil, fmt.Errorf("cuda: no output %q", name)
	}
	if !b.ran {
		return nil, nil, fmt.Errorf("cuda: output %q: no successful Step", name)
	}
	buf := b.plan.Buffers[i]
	shape := make([]int, len(buf.Shape))
	for j, dm := range buf.Shape {
		switch dm {
		case ir.T:
			shape[j] = b.t
		case ir.S:
			shape[j] = b.s
		default:
			shape[j] = int(dm)
		}
	}
	n, _ := buf.Shape.Elems(int64(b.t), int64(b.s))
	if !b.hostValid[i] && n > 0 {
		goruntime.LockOSThread()
		defer goruntime.UnlockOSThread()
		if err := b.d.check(b.d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
			return nil, nil, err
		}
		if int64(cap(b.host[i])) < n {
			b.growHost(i, n)
		}
	}
	h := b.host[i][:n]
	if !b.hostValid[i] && n > 0 {
		if err := b.d.check(b.d.cuMemcpyDtoH(unsafe.Pointer(&h[0]), b.a.buffers[i], uint64(4*n)), "download "+name); err != nil {
			return nil, nil, err
		}
		b.hostValid[i] = true
	}
	return h, shape, nil
}

// growHost replaces output i's host buffer by one of n floats: page-locked
// (cuMemAllocHost), so downloads run at full bus speed without a staging
// copy — logits are S·vocab floats each step — or, if the driver refuses,
// Go memory. It grows to the largest step seen, not MaxTokens rows.
func (b *Backend) growHost(i int, n int64) {
	if p, ok := b.pinned[i]; ok {
		b.d.cuMemFreeHost(p)
		delete(b.pinned, i)
	}
	p, pinned := b.hostAlloc(4 * uint64(n))
	if pinned {
		b.pinned[i] = p
	}
	b.host[i] = unsafe.Slice((*float32)(p), n)
}

// hostAlloc returns n bytes (a multiple of 4) of host memory for
// downloads: page-locked (cuMemAllocHost, pinned true: the caller frees it
// with cuMemFreeHost) or, if the driver refuses, Go memory.
func (b *Backend) hostAlloc(n uint64) (p unsafe.Pointer, pinned bool) {
	if b.d.cuMemAllocHost(&p, n) == 0 && p != nil {
		return p, true
	}
	return unsafe.Pointer(unsafe.SliceData(make([]uint32, (n+3)/4))), false
}

// Argmax returns the greedy token of each logits row of the last Step,
// computed on the device (only S int32s cross the bus): the first index of
// the maximum, or -1 for a row without a finite maximum (runtime.Argmaxer).
func (b *Backend) Argmax() ([]int32, error) {
	if b.closed {
		return nil, errClosed
	}
	i, ok := b.outputs["logits"]
	if !ok || b.argmax == 0 || !b.ran {
		return nil, fmt.Errorf("cuda: argmax: no logits from a successful Step")
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	d := b.d
	if err := d.check(d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		return nil, err
	}
	rows := int32(b.s)
	x, out := b.a.buffers[i], b.argOut
	if err := b.runHelper(b.argmax, b.s, "argmax", unsafe.Pointer(&x), unsafe.Pointer(&out), unsafe.Pointer(&rows)); err != nil {
		return nil, err
	}
	ids := make([]int32, rows)
	if err := d.check(d.cuMemcpyDtoH(unsafe.Pointer(&ids[0]), out, uint64(4*rows)), "download argmax"); err != nil {
		return nil, err
	}
	return ids, nil
}

// runHelper launches a sampling helper kernel (argmax, candidates) over one
// 256-thread block per logits row, with its parameters at params (pinned
// for the call), and waits for it.
func (b *Backend) runHelper(fn uintptr, rows int, what string, params ...unsafe.Pointer) error {
	var pin goruntime.Pinner
	defer pin.Unpin()
	pin.Pin(&params[0])
	for _, p := range params {
		pin.Pin(p)
	}
	if err := b.d.check(b.d.cuLaunchKernel(fn, uint32(rows), 1, 1, 256, 1, 1, 0, b.stream, unsafe.Pointer(&params[0]), nil), what); err != nil {
		return err
	}
	return b.d.check(b.d.cuStreamSynchronize(b.stream), what)
}

// Close releases every device resource. Closing twice is harmless.
func (b *Backend) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	d := b.d
	if d == nil {
		return nil
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if b.ctx != 0 {
		d.cuCtxSetCurrent(b.ctx)
	}
	for _, g := range b.graphs {
		d.cuGraphExecDestroy(g[1])
		d.cuGraphDestroy(g[0])
	}
	for _, p := range b.allocs {
		d.cuMemFree(p)
	}
	for _, p := range b.pinned {
		d.cuMemFreeHost(p)
	}
	b.freeCandidates()
	if b.mod != 0 {
		d.cuModuleUnload(b.mod)
	}
	if b.stream != 0 {
		d.cuStreamDestroy(b.stream)
	}
	if b.ctx != 0 {
		d.cuDevicePrimaryCtxRelease(b.dev)
	}
	b.pinner.Unpin()
	b.allocs, b.graphs, b.launches, b.host, b.pinned = nil, nil, nil, nil, nil
	return nil
}
