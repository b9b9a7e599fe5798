package cpu

import (
	"fmt"
	"slices"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
)

// NewStage is New, kept for the callers of the stage stopgap: since
// runtime.Batch carries named inputs (Batch.Inputs), New binds every plan
// input that is not tokens, positions or logit_rows to them (Qwen3-VL's
// pixel_values, pos_idx, ..., mrope_positions, image_mask, image_embeds,
// deepstack.<k>). SetInput still fills such an input directly for steps
// whose Batch.Inputs lacks it.
func NewStage(p *ir.Plan, weights []Weight, opt Options) (*Backend, error) {
	return New(p, weights, opt)
}

// bindNamed binds a plan input other than tokens, positions and
// logit_rows to Batch.Inputs (or SetInput): a host tensor of f32 or i32
// [T, ...] sized for MaxTokens.
func (b *Backend) bindNamed(in ir.PlanTensor) error {
	if in.DType != ir.I32 && in.DType != ir.F32 {
		return fmt.Errorf("cpu: input %q: dtype %v, want f32 or i32", in.Name, in.DType)
	}
	if len(in.Shape) == 0 || in.Shape[0] != ir.T {
		return fmt.Errorf("cpu: input %q: shape %v, want [T, ...]", in.Name, in.Shape)
	}
	for _, prev := range b.plan.Inputs[:len(b.inputs)] {
		if prev.Name == in.Name {
			return fmt.Errorf("cpu: input %q declared twice", in.Name)
		}
	}
	n, ok := in.Shape.Elems(int64(b.opt.MaxTokens), int64(b.opt.MaxTokens))
	if row, _ := in.Shape[1:].Elems(0, 0); !ok || n > 1<<34 || row <= 0 {
		return fmt.Errorf("cpu: input %q: shape %v is too large or empty", in.Name, in.Shape)
	}
	t := tensor{dt: in.DType, shape: in.Shape}
	if in.DType == ir.I32 {
		t.i32 = make([]int32, n)
	} else {
		t.f32 = make([]float32, n)
	}
	b.inputs = append(b.inputs, t)
	b.binds = append(b.binds, bindHost)
	if b.hostSet == nil {
		b.hostSet = map[string]bool{}
	}
	return nil
}

// checkNamed checks bt.Inputs against the plan's named inputs before a
// step touches anything: each one given must be exactly T rows of the
// input's dtype, and each one not given must have been set by SetInput.
func (b *Backend) checkNamed(bt *runtime.Batch) error {
	named := 0
	for i, in := range b.plan.Inputs {
		if b.binds[i] != bindHost {
			continue
		}
		v, ok := bt.Inputs[in.Name]
		if !ok {
			if !b.hostSet[in.Name] {
				return fmt.Errorf("cpu: step input %q missing from Batch.Inputs", in.Name)
			}
			continue
		}
		named++
		row, _ := in.Shape[1:].Elems(0, 0)
		want := int64(len(bt.Tokens)) * row
		switch {
		case in.DType == ir.F32 && v.I32 == nil && int64(len(v.F32)) == want:
		case in.DType == ir.I32 && v.F32 == nil && int64(len(v.I32)) == want:
		default:
			return fmt.Errorf("cpu: step input %q: %d f32 and %d i32 values, want %d %v (%d tokens × %d)",
				in.Name, len(v.F32), len(v.I32), want, in.DType, len(bt.Tokens), row)
		}
	}
	if named != len(bt.Inputs) {
		for name := range bt.Inputs {
			if i := slices.IndexFunc(b.plan.Inputs, func(in ir.PlanTensor) bool { return in.Name == name }); i < 0 || b.binds[i] != bindHost {
				return fmt.Errorf("cpu: step input %q: the plan has no such input", name)
			}
		}
	}
	return nil
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
		b.hostSet[name] = true
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
