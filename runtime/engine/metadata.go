package engine

import (
	"fmt"
	"math"

	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/schemas/pio"
)

// Metadata is everything in an engine besides the weights.
type Metadata struct {
	Producer             string // the program that built the engine, e.g. "pioc v0.1.0"
	Model                ModelInfo
	TokenizerJSON        []byte // tokenizer.json, verbatim
	TokenizerConfigJSON  []byte // tokenizer_config.json, verbatim
	GenerationConfigJSON []byte // generation_config.json, verbatim
	// PreprocessorConfigJSON is the image processor's preprocessor_config.json,
	// verbatim (vision-language models; format 1.2).
	PreprocessorConfigJSON []byte
	ChatTemplate           string // Jinja chat template
	Plan                   *ir.Plan
	Kernels                *Kernels // Plan's CUDA code (pioc build --target cuda); nil in CPU-only engines
	// Stages are plans besides Plan, in run order (format 1.2): Qwen3-VL's
	// "vision" stage runs once per prefill that carries images and feeds
	// Plan's inputs by output name. All plans share the weights.
	Stages []Stage
}

// Stage is a named plan of a multi-stage engine.
type Stage struct {
	Name string
	Plan *ir.Plan
	// Kernels is the stage plan's CUDA code (format 1.3); nil in CPU-only
	// engines and in engines written before 1.3.
	Kernels *Kernels
}

// ModelInfo names the checkpoint an engine was built from.
type ModelInfo struct {
	Name         string // name given to pioc build, e.g. "qwen3-0.6b"
	Architecture string // HF architecture, e.g. "Qwen3ForCausalLM"
	HFRepo       string // e.g. "Qwen/Qwen3-0.6B"
	ConfigJSON   []byte // config.json, verbatim
}

// WeightEntry locates one tensor in the weights region.
type WeightEntry struct {
	Name     string
	DType    ir.DType
	Shape    []int64
	Offset   uint64 // from the start of the weights region; a multiple of TensorAlign
	Length   uint64 // bytes: elems × dtype size
	Checksum uint32 // CRC-32C (Castagnoli) of the bytes
}

// encodeMetadata builds the metadata FlatBuffer. The caller has checked
// that every index fits an int32 (checkInt32s).
func encodeMetadata(m *Metadata, weights []WeightEntry) (buf []byte, err error) {
	defer func() {
		// The builder panics past 2 GiB.
		if r := recover(); r != nil {
			buf, err = nil, fmt.Errorf("engine: encoding metadata: %v", r)
		}
	}()
	e := &encoder{b: flatbuffers.NewBuilder(1 << 16)}
	e.b.FinishWithFileIdentifier(e.engine(m, weights), []byte(metaIdent))
	return e.b.FinishedBytes(), nil
}

// encoder writes the metadata FlatBuffer: one method per table, the
// counterpart of decoder. A FlatBuffer is built bottom-up, so each method
// first builds its table's strings, vectors and child tables, in field
// order, then the table, and returns the table's offset. That order is the
// byte order of every engine written: changing it changes the files (not
// what they decode to), which the engines' byte-for-byte comparisons
// would catch.
//
// Absent and empty stay apart, as the decoder keeps them: "" and a nil
// slice are absent fields, an empty slice is an empty vector. The kernels
// section (kernels.go) writes its strings and vectors even when empty, as
// it always has.
type encoder struct{ b *flatbuffers.Builder }

func (e *encoder) str(s string) flatbuffers.UOffsetT {
	if s == "" {
		return 0
	}
	return e.b.CreateString(s)
}

func (e *encoder) bytes(v []byte) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	return e.b.CreateByteVector(v)
}

func (e *encoder) longs(v []int64) flatbuffers.UOffsetT {
	if v == nil {
		return 0
	}
	e.b.StartVector(8, len(v), 8)
	for i := len(v) - 1; i >= 0; i-- {
		e.b.PrependInt64(v[i])
	}
	return e.b.EndVector(len(v))
}

func (e *encoder) dims(s ir.Shape) flatbuffers.UOffsetT {
	if s == nil {
		return 0
	}
	v := make([]int64, len(s))
	for i, d := range s {
		v[i] = int64(d)
	}
	return e.longs(v)
}

// vector writes the vector of the tables at offs, empty for none.
func (e *encoder) vector(offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	e.b.StartVector(4, len(offs), 4)
	for i := len(offs) - 1; i >= 0; i-- {
		e.b.PrependUOffsetT(offs[i])
	}
	return e.b.EndVector(len(offs))
}

// tables is vector with nil offs an absent field.
func (e *encoder) tables(offs []flatbuffers.UOffsetT) flatbuffers.UOffsetT {
	if offs == nil {
		return 0
	}
	return e.vector(offs)
}

// each builds table(x) for every x of xs, in order, and returns their
// offsets: nil for a nil xs.
func each[T any](xs []T, table func(T) flatbuffers.UOffsetT) []flatbuffers.UOffsetT {
	if xs == nil {
		return nil
	}
	offs := make([]flatbuffers.UOffsetT, len(xs))
	for i, x := range xs {
		offs[i] = table(x)
	}
	return offs
}

// engine writes the root table. The weight table is always present (empty
// for none), the stages only for a multi-stage engine.
func (e *encoder) engine(m *Metadata, weights []WeightEntry) flatbuffers.UOffsetT {
	ws := e.vector(each(weights, e.weight))
	plan := e.plan(m.Plan)
	var stages flatbuffers.UOffsetT
	if len(m.Stages) > 0 {
		stages = e.vector(each(m.Stages, e.stage))
	}
	model := e.model(m.Model)
	kernels := e.kernels(m.Kernels)
	producer, chat := e.str(m.Producer), e.str(m.ChatTemplate)
	tok, tokCfg, genCfg := e.bytes(m.TokenizerJSON), e.bytes(m.TokenizerConfigJSON), e.bytes(m.GenerationConfigJSON)
	pre := e.bytes(m.PreprocessorConfigJSON)
	b := e.b
	pio.EngineStart(b)
	pio.EngineAddProducer(b, producer)
	pio.EngineAddModel(b, model)
	pio.EngineAddTokenizerJson(b, tok)
	pio.EngineAddTokenizerConfigJson(b, tokCfg)
	pio.EngineAddChatTemplate(b, chat)
	pio.EngineAddGenerationConfigJson(b, genCfg)
	pio.EngineAddPlan(b, plan)
	pio.EngineAddWeights(b, ws)
	pio.EngineAddKernels(b, kernels) // a 0 offset (none) leaves the field out
	pio.EngineAddStages(b, stages)
	pio.EngineAddPreprocessorConfigJson(b, pre)
	return pio.EngineEnd(b)
}

func (e *encoder) model(mi ModelInfo) flatbuffers.UOffsetT {
	name, arch, repo, config := e.str(mi.Name), e.str(mi.Architecture), e.str(mi.HFRepo), e.bytes(mi.ConfigJSON)
	b := e.b
	pio.ModelStart(b)
	pio.ModelAddName(b, name)
	pio.ModelAddArchitecture(b, arch)
	pio.ModelAddHfRepo(b, repo)
	pio.ModelAddConfigJson(b, config)
	return pio.ModelEnd(b)
}

func (e *encoder) weight(w WeightEntry) flatbuffers.UOffsetT {
	name, shape := e.str(w.Name), e.longs(w.Shape)
	b := e.b
	pio.WeightEntryStart(b)
	pio.WeightEntryAddName(b, name)
	pio.WeightEntryAddDtype(b, byte(w.DType))
	pio.WeightEntryAddShape(b, shape)
	pio.WeightEntryAddOffset(b, w.Offset)
	pio.WeightEntryAddLength(b, w.Length)
	pio.WeightEntryAddChecksum(b, w.Checksum)
	return pio.WeightEntryEnd(b)
}

func (e *encoder) stage(st Stage) flatbuffers.UOffsetT {
	plan := e.plan(st.Plan)
	name := e.str(st.Name)
	kernels := e.kernels(st.Kernels)
	b := e.b
	pio.StageStart(b)
	pio.StageAddName(b, name)
	pio.StageAddPlan(b, plan)
	pio.StageAddKernels(b, kernels)
	return pio.StageEnd(b)
}

func (e *encoder) plan(p *ir.Plan) flatbuffers.UOffsetT {
	if p == nil {
		return 0
	}
	inputs := e.tables(each(p.Inputs, e.tensor))
	weights := e.tables(each(p.Weights, e.tensor))
	buffers := e.tables(each(p.Buffers, e.buffer))
	caches := e.tables(each(p.Caches, e.cache))
	steps := e.tables(each(p.Steps, e.step))
	outputs := e.tables(each(p.Outputs, e.output))
	b := e.b
	pio.PlanStart(b)
	pio.PlanAddInputs(b, inputs)
	pio.PlanAddWeights(b, weights)
	pio.PlanAddBuffers(b, buffers)
	pio.PlanAddCaches(b, caches)
	pio.PlanAddSteps(b, steps)
	pio.PlanAddOutputs(b, outputs)
	pio.PlanAddArenaPerT(b, p.ArenaPerT)
	pio.PlanAddArenaFixed(b, p.ArenaFixed)
	return pio.PlanEnd(b)
}

func (e *encoder) tensor(t ir.PlanTensor) flatbuffers.UOffsetT {
	name, shape := e.str(t.Name), e.dims(t.Shape)
	b := e.b
	pio.TensorStart(b)
	pio.TensorAddName(b, name)
	pio.TensorAddDtype(b, byte(t.DType))
	pio.TensorAddShape(b, shape)
	return pio.TensorEnd(b)
}

func (e *encoder) buffer(bu ir.Buffer) flatbuffers.UOffsetT {
	shape := e.dims(bu.Shape)
	b := e.b
	pio.BufferStart(b)
	pio.BufferAddDtype(b, byte(bu.DType))
	pio.BufferAddShape(b, shape)
	pio.BufferAddOffsetPerT(b, bu.OffsetPerT)
	pio.BufferAddOffsetFixed(b, bu.OffsetFixed)
	pio.BufferAddView(b, int32(bu.View))
	return pio.BufferEnd(b)
}

func (e *encoder) cache(c ir.CacheSpec) flatbuffers.UOffsetT {
	entries := e.tables(each(c.Entries, e.shape))
	b := e.b
	pio.CacheStart(b)
	pio.CacheAddKind(b, byte(c.Kind))
	pio.CacheAddLayer(b, int32(c.Layer))
	pio.CacheAddDtype(b, byte(c.DType))
	pio.CacheAddEntries(b, entries)
	return pio.CacheEnd(b)
}

// shape writes one entry shape of a cache.
func (e *encoder) shape(s ir.Shape) flatbuffers.UOffsetT {
	dims := e.dims(s)
	pio.ShapeStart(e.b)
	pio.ShapeAddDims(e.b, dims)
	return pio.ShapeEnd(e.b)
}

func (e *encoder) step(s ir.Step) flatbuffers.UOffsetT {
	args := e.refs(s.Args)
	attrs := e.tables(each(s.Attrs, e.attr))
	b := e.b
	pio.StepStart(b)
	pio.StepAddOp(b, uint16(s.Op))
	pio.StepAddArgs(b, args)
	pio.StepAddOut(b, int32(s.Out))
	pio.StepAddAttrs(b, attrs)
	return pio.StepEnd(b)
}

// refs writes a step's operands, a vector of Ref structs.
func (e *encoder) refs(rs []ir.Ref) flatbuffers.UOffsetT {
	if rs == nil {
		return 0
	}
	pio.StepStartArgsVector(e.b, len(rs))
	for i := len(rs) - 1; i >= 0; i-- {
		pio.CreateRef(e.b, byte(rs[i].Kind), int32(rs[i].Index))
	}
	return e.b.EndVector(len(rs))
}

func (e *encoder) attr(a ir.Attr) flatbuffers.UOffsetT {
	key, s, ints := e.str(a.Key), e.str(a.S), e.longs(a.Is)
	b := e.b
	pio.AttrStart(b)
	pio.AttrAddKey(b, key)
	pio.AttrAddKind(b, byte(a.Kind))
	pio.AttrAddI(b, a.I)
	pio.AttrAddF(b, a.F)
	pio.AttrAddS(b, s)
	pio.AttrAddInts(b, ints)
	return pio.AttrEnd(b)
}

func (e *encoder) output(o ir.PlanOutput) flatbuffers.UOffsetT {
	name := e.str(o.Name)
	pio.OutputStart(e.b)
	pio.OutputAddName(e.b, name)
	pio.OutputAddBuffer(e.b, int32(o.Buffer))
	return pio.OutputEnd(e.b)
}

// checkInt32s reports a plan whose indices do not fit the file's int32
// fields (which a valid plan of any real model never has).
func checkInt32s(p *ir.Plan) error {
	fits := func(v int) bool { return v >= math.MinInt32 && v <= math.MaxInt32 }
	for i, b := range p.Buffers {
		if !fits(b.View) {
			return fmt.Errorf("buffer %d: view %d does not fit int32", i, b.View)
		}
	}
	for i, c := range p.Caches {
		if !fits(c.Layer) {
			return fmt.Errorf("cache %d: layer %d does not fit int32", i, c.Layer)
		}
	}
	for i, s := range p.Steps {
		if !fits(s.Out) {
			return fmt.Errorf("step %d: output %d does not fit int32", i, s.Out)
		}
		for _, a := range s.Args {
			if !fits(a.Index) {
				return fmt.Errorf("step %d: operand %v does not fit int32", i, a)
			}
		}
	}
	for _, o := range p.Outputs {
		if !fits(o.Buffer) {
			return fmt.Errorf("output %q: buffer %d does not fit int32", o.Name, o.Buffer)
		}
	}
	return nil
}

// badMetadata is panicked by the decoder's own checks; decodeMetadata
// recovers it (and any runtime panic of the generated accessors) into an
// "engine: corrupt metadata: ..." error.
type badMetadata string

func badf(format string, args ...any) { panic(badMetadata(fmt.Sprintf(format, args...))) }

// decoder reads the metadata FlatBuffer. flatbuffers-go has no verifier,
// so the decoder checks every vector against the buffer before allocating
// for it, and charges everything it copies to a budget of the buffer's own
// size: a hostile buffer whose offsets share (or nest) one big vector many
// times cannot make it allocate or loop more than the input could hold.
type decoder struct {
	budget uint64
}

func (d *decoder) take(n uint64) {
	if n > d.budget {
		badf("metadata refers to more data than it holds (shared or overlapping offsets)")
	}
	d.budget -= n
}

// vec returns the length of the vector in field slot of t, after checking
// that its elemSize-byte elements lie inside the buffer. want is the
// generated accessor's length, which must agree (it reads the same slot; a
// disagreement means a slot constant below is wrong).
func (d *decoder) vec(t flatbuffers.Table, slot flatbuffers.VOffsetT, elemSize int, want int) int {
	o := flatbuffers.UOffsetT(t.Offset(slot))
	if o == 0 {
		if want != 0 {
			badf("internal: vector slot %d disagrees with the schema", slot)
		}
		return 0
	}
	start, n := uint64(t.Vector(o)), uint64(t.VectorLen(o))
	size := uint64(len(t.Bytes))
	if start > size || n*uint64(elemSize) > size-start {
		badf("vector of %d elements at byte %d runs past the end of the %d-byte metadata", n, start, size)
	}
	if int(n) != want {
		badf("internal: vector slot %d disagrees with the schema", slot)
	}
	d.take(n * uint64(elemSize))
	return int(n)
}

// str copies a string field.
func (d *decoder) str(b []byte) string {
	d.take(uint64(len(b)))
	return string(b)
}

// bytes copies a byte-vector field, keeping absent apart from empty (the
// generated XxxBytes accessors return nil only for an absent field).
func (d *decoder) bytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	d.take(uint64(len(b)))
	return append([]byte{}, b...)
}

// present reports whether the field in slot is set (distinguishes an absent
// vector from an empty one).
func present(t flatbuffers.Table, slot flatbuffers.VOffsetT) bool { return t.Offset(slot) != 0 }

// vtable slots of the fields read as vectors: 4 + 2·(field index).
const (
	slotEngineWeights = 18
	slotEngineStages  = 22
	slotTensorShape   = 8
	slotBufferShape   = 6
	slotShapeDims     = 4
	slotCacheEntries  = 10
	slotStepArgs      = 6
	slotStepAttrs     = 10
	slotAttrInts      = 14
	slotPlanInputs    = 4
	slotPlanWeights   = 6
	slotPlanBuffers   = 8
	slotPlanCaches    = 10
	slotPlanSteps     = 12
	slotPlanOutputs   = 14
	slotWeightShape   = 8
)

// decodeMetadata reads the metadata FlatBuffer into Go values (copies: the
// result does not alias buf). It checks the buffer's structure, not the
// plan's meaning (Parse validates that).
func decodeMetadata(buf []byte) (m *Metadata, weights []WeightEntry, err error) {
	defer func() {
		if r := recover(); r != nil {
			m, weights = nil, nil
			err = corrupt("corrupt metadata: %v", r)
		}
	}()
	if len(buf) < 8 || string(buf[4:8]) != metaIdent {
		return nil, nil, corrupt("corrupt metadata: no %q FlatBuffer identifier", metaIdent)
	}
	d := &decoder{budget: uint64(len(buf))}
	root := pio.GetRootAsEngine(buf, 0)
	rt := root.Table()
	m = &Metadata{
		Producer:             d.str(root.Producer()),
		ChatTemplate:         d.str(root.ChatTemplate()),
		TokenizerJSON:        d.bytes(root.TokenizerJsonBytes()),
		TokenizerConfigJSON:  d.bytes(root.TokenizerConfigJsonBytes()),
		GenerationConfigJSON: d.bytes(root.GenerationConfigJsonBytes()),
	}
	m.PreprocessorConfigJSON = d.bytes(root.PreprocessorConfigJsonBytes())
	if mi := root.Model(nil); mi != nil {
		m.Model = ModelInfo{
			Name:         d.str(mi.Name()),
			Architecture: d.str(mi.Architecture()),
			HFRepo:       d.str(mi.HfRepo()),
			ConfigJSON:   d.bytes(mi.ConfigJsonBytes()),
		}
	}
	p := root.Plan(nil)
	if p == nil {
		badf("no plan")
	}
	m.Plan = d.plan(p)

	n := d.vec(rt, slotEngineWeights, 4, root.WeightsLength())
	weights = make([]WeightEntry, n)
	var we pio.WeightEntry
	for i := range weights {
		root.Weights(&we, i)
		w := &weights[i]
		w.Name = d.str(we.Name())
		w.DType = ir.DType(we.Dtype())
		w.Shape = make([]int64, d.vec(we.Table(), slotWeightShape, 8, we.ShapeLength()))
		for j := range w.Shape {
			w.Shape[j] = we.Shape(j)
		}
		w.Offset, w.Length, w.Checksum = we.Offset(), we.Length(), we.Checksum()
		if c := we.Compression(); c != 0 {
			return nil, nil, incompatible("weight %q: compression %d is unknown to this runtime", w.Name, c)
		}
	}
	if k := root.Kernels(nil); k != nil {
		m.Kernels = d.kernels(k)
	}
	if present(rt, slotEngineStages) {
		m.Stages = make([]Stage, d.vec(rt, slotEngineStages, 4, root.StagesLength()))
		var st pio.Stage
		for i := range m.Stages {
			root.Stages(&st, i)
			sp := st.Plan(nil)
			if sp == nil {
				badf("stage %d has no plan", i)
			}
			m.Stages[i] = Stage{Name: d.str(st.Name()), Plan: d.plan(sp)}
			if k := st.Kernels(nil); k != nil {
				m.Stages[i].Kernels = d.stageKernels(m.Stages[i].Name, k)
			}
		}
	}
	return m, weights, nil
}

// stageKernels decodes a stage's kernels section, naming the stage in
// what is wrong with it.
func (d *decoder) stageKernels(name string, fk *pio.Kernels) *Kernels {
	defer func() {
		if r := recover(); r != nil {
			if msg, ok := r.(badMetadata); ok {
				badf("stage %q: %s", name, string(msg))
			}
			panic(r)
		}
	}()
	return d.kernels(fk)
}

func (d *decoder) plan(fp *pio.Plan) *ir.Plan {
	pt := fp.Table()
	p := &ir.Plan{ArenaPerT: fp.ArenaPerT(), ArenaFixed: fp.ArenaFixed()}
	shape := func(t flatbuffers.Table, slot flatbuffers.VOffsetT, n int, at func(int) int64) ir.Shape {
		if !present(t, slot) {
			return nil
		}
		s := make(ir.Shape, d.vec(t, slot, 8, n))
		for i := range s {
			s[i] = ir.Dim(at(i))
		}
		return s
	}
	tensors := func(slot flatbuffers.VOffsetT, n int, get func(*pio.Tensor, int) bool) []ir.PlanTensor {
		if !present(pt, slot) {
			return nil
		}
		ts := make([]ir.PlanTensor, d.vec(pt, slot, 4, n))
		var ft pio.Tensor
		for i := range ts {
			get(&ft, i)
			ts[i] = ir.PlanTensor{
				Name:  d.str(ft.Name()),
				DType: ir.DType(ft.Dtype()),
				Shape: shape(ft.Table(), slotTensorShape, ft.ShapeLength(), ft.Shape),
			}
		}
		return ts
	}
	p.Inputs = tensors(slotPlanInputs, fp.InputsLength(), fp.Inputs)
	p.Weights = tensors(slotPlanWeights, fp.WeightsLength(), fp.Weights)

	if present(pt, slotPlanBuffers) {
		p.Buffers = make([]ir.Buffer, d.vec(pt, slotPlanBuffers, 4, fp.BuffersLength()))
		var fb pio.Buffer
		for i := range p.Buffers {
			fp.Buffers(&fb, i)
			p.Buffers[i] = ir.Buffer{
				DType:       ir.DType(fb.Dtype()),
				Shape:       shape(fb.Table(), slotBufferShape, fb.ShapeLength(), fb.Shape),
				OffsetPerT:  fb.OffsetPerT(),
				OffsetFixed: fb.OffsetFixed(),
				View:        int(fb.View()),
			}
		}
	}

	if present(pt, slotPlanCaches) {
		p.Caches = make([]ir.CacheSpec, d.vec(pt, slotPlanCaches, 4, fp.CachesLength()))
		var fc pio.Cache
		var fs pio.Shape
		for i := range p.Caches {
			fp.Caches(&fc, i)
			c := ir.CacheSpec{Kind: ir.CacheKind(fc.Kind()), Layer: int(fc.Layer()), DType: ir.DType(fc.Dtype())}
			if present(fc.Table(), slotCacheEntries) {
				c.Entries = make([]ir.Shape, d.vec(fc.Table(), slotCacheEntries, 4, fc.EntriesLength()))
				for j := range c.Entries {
					fc.Entries(&fs, j)
					c.Entries[j] = shape(fs.Table(), slotShapeDims, fs.DimsLength(), fs.Dims)
				}
			}
			p.Caches[i] = c
		}
	}

	if present(pt, slotPlanSteps) {
		p.Steps = make([]ir.Step, d.vec(pt, slotPlanSteps, 4, fp.StepsLength()))
		var fs pio.Step
		var fr pio.Ref
		var fa pio.Attr
		for i := range p.Steps {
			fp.Steps(&fs, i)
			s := ir.Step{Op: ir.Op(fs.Op()), Out: int(fs.Out())}
			st := fs.Table()
			if present(st, slotStepArgs) {
				s.Args = make([]ir.Ref, d.vec(st, slotStepArgs, 8, fs.ArgsLength()))
				for j := range s.Args {
					fs.Args(&fr, j)
					s.Args[j] = ir.Ref{Kind: ir.RefKind(fr.Kind()), Index: int(fr.Index())}
				}
			}
			if present(st, slotStepAttrs) {
				s.Attrs = make(ir.Attrs, d.vec(st, slotStepAttrs, 4, fs.AttrsLength()))
				for j := range s.Attrs {
					fs.Attrs(&fa, j)
					a := ir.Attr{Key: d.str(fa.Key()), Kind: ir.AttrKind(fa.Kind()), I: fa.I(), F: fa.F(), S: d.str(fa.S())}
					if present(fa.Table(), slotAttrInts) {
						a.Is = make([]int64, d.vec(fa.Table(), slotAttrInts, 8, fa.IntsLength()))
						for k := range a.Is {
							a.Is[k] = fa.Ints(k)
						}
					}
					if a.Kind < ir.AttrInt || a.Kind > ir.AttrInts {
						badf("step %d: attribute %q has unknown kind %d", i, a.Key, a.Kind)
					}
					if j > 0 && s.Attrs[j-1].Key >= a.Key {
						badf("step %d: attributes not sorted by key or duplicated (%q after %q)", i, a.Key, s.Attrs[j-1].Key)
					}
					s.Attrs[j] = a
				}
			}
			p.Steps[i] = s
		}
	}

	if present(pt, slotPlanOutputs) {
		p.Outputs = make([]ir.PlanOutput, d.vec(pt, slotPlanOutputs, 4, fp.OutputsLength()))
		var fo pio.Output
		for i := range p.Outputs {
			fp.Outputs(&fo, i)
			p.Outputs[i] = ir.PlanOutput{Name: d.str(fo.Name()), Buffer: int(fo.Buffer())}
		}
	}
	return p
}
