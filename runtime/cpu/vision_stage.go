package cpu

import (
	"errors"
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/engine"
)

// NewStage is New for one plan stage of a multi-stage engine (Qwen3-VL's
// vision and text plans): inputs named tokens, positions and logit_rows bind
// to the Batch as in New; every other input (pixel_values, pos_idx, ...,
// mrope_positions, image_mask, image_embeds, deepstack.<k>) is a host
// tensor sized for MaxTokens that the caller fills with SetInput before
// each Step, for exactly the step's T rows (kernels read the first T rows;
// what a previous step left beyond them is not read).
//
// Stage inputs are a stopgap until runtime.Batch carries named stage
// inputs; New itself still refuses plans that need them.
func NewStage(p *ir.Plan, weights []Weight, opt Options) (*Backend, error) {
	if p == nil {
		return nil, errors.New("cpu: nil plan")
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
	for _, in := range p.Inputs {
		bind, ok := inputBinds[in.Name]
		if ok && (in.DType != ir.I32 || len(in.Shape) != 1 || !in.Shape[0].Symbolic()) {
			return nil, fmt.Errorf("cpu: input %q: type %v%v, want i32[T] or i32[S]", in.Name, in.DType, in.Shape)
		}
		if !ok {
			bind = bindHost
			if in.DType != ir.I32 && in.DType != ir.F32 {
				return nil, fmt.Errorf("cpu: input %q: dtype %v, want f32 or i32", in.Name, in.DType)
			}
			if len(in.Shape) == 0 || in.Shape[0] != ir.T {
				return nil, fmt.Errorf("cpu: input %q: shape %v, want [T, ...]", in.Name, in.Shape)
			}
		}
		for _, prev := range b.plan.Inputs[:len(b.inputs)] {
			if prev.Name == in.Name {
				return nil, fmt.Errorf("cpu: input %q declared twice", in.Name)
			}
		}
		n, ok := in.Shape.Elems(int64(opt.MaxTokens), int64(opt.MaxTokens))
		if !ok || n > 1<<34 {
			return nil, fmt.Errorf("cpu: input %q: shape %v is too large", in.Name, in.Shape)
		}
		t := tensor{dt: in.DType, shape: in.Shape}
		if in.DType == ir.I32 {
			t.i32 = make([]int32, n)
		} else {
			t.f32 = make([]float32, n)
		}
		b.inputs = append(b.inputs, t)
		b.binds = append(b.binds, bind)
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

// bindHost marks an input the caller fills with SetInput.
const bindHost = -1

// SetInput copies rows of a host input of a NewStage backend: f32 for f32
// inputs, i32 for i32 ones (the other nil). len must be a whole number of
// rows of the input's [T, ...] shape and at most MaxTokens rows.
func (b *Backend) SetInput(name string, f32 []float32, i32 []int32) error {
	if b.closed {
		return errClosed
	}
	for i, in := range b.plan.Inputs {
		if in.Name != name {
			continue
		}
		if b.binds[i] != bindHost {
			return fmt.Errorf("cpu: input %q is bound to the batch", name)
		}
		row, _ := in.Shape[1:].Elems(0, 0)
		t := b.inputs[i]
		var n int
		switch {
		case in.DType == ir.F32 && i32 == nil:
			n = len(f32)
		case in.DType == ir.I32 && f32 == nil:
			n = len(i32)
		default:
			return fmt.Errorf("cpu: input %q is %v", name, in.DType)
		}
		if row <= 0 || n == 0 || int64(n)%row != 0 || int64(n)/row > int64(b.opt.MaxTokens) {
			return fmt.Errorf("cpu: input %q: %d values are not 1 to %d rows of %d", name, n, b.opt.MaxTokens, row)
		}
		copy(t.f32, f32)
		copy(t.i32, i32)
		return nil
	}
	return fmt.Errorf("cpu: the plan has no input %q", name)
}

// StageFromEngine makes a NewStage backend for one plan of an opened
// engine: name "" is the main plan, otherwise the stage of that name. The
// weights stay in the engine's mapping.
func StageFromEngine(e *engine.Engine, name string, opt Options) (*Backend, error) {
	p, idx := e.Meta.Plan, e.PlanWeights
	if name != "" {
		p = nil
		for k, st := range e.Meta.Stages {
			if st.Name == name {
				p, idx = st.Plan, e.StageWeights[k]
			}
		}
		if p == nil {
			return nil, fmt.Errorf("cpu: engine has no stage %q", name)
		}
	}
	if p == nil {
		return nil, fmt.Errorf("cpu: engine has no plan")
	}
	ws := make([]Weight, len(p.Weights))
	for i := range p.Weights {
		we := e.Weights[idx[i]]
		ws[i] = Weight{DType: we.DType, Shape: we.Shape, Data: e.WeightData(idx[i])}
	}
	return NewStage(p, ws, opt)
}
