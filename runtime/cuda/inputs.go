package cuda

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// namedInput is a plan input other than tokens, positions and logit_rows
// (Qwen3-VL's pixel_values, pos_idx, pos_w, vision_pos, segments,
// mrope_positions, image_mask, image_embeds, deepstack.<k>): an f32 or i32
// [T, ...] device buffer sized for MaxTokens rows, filled from
// runtime.Batch.Inputs at every step before anything runs (so a captured
// decode graph, which bakes its address, reads the step's values).
type namedInput struct {
	name string
	dt   ir.DType
	row  int64 // values per token
	dev  uint64
}

// bindNamed allocates the device buffer of a named plan input and returns
// its address.
func (b *Backend) bindNamed(in ir.PlanTensor) (uint64, error) {
	if in.DType != ir.I32 && in.DType != ir.F32 {
		return 0, fmt.Errorf("cuda: input %q: dtype %v, want f32 or i32 (the runtime provides i32 tokens, positions and logit_rows; other inputs come from Batch.Inputs)", in.Name, in.DType)
	}
	if len(in.Shape) == 0 || in.Shape[0] != ir.T {
		return 0, fmt.Errorf("cuda: input %q: shape %v, want [T, ...]", in.Name, in.Shape)
	}
	row, ok := in.Shape[1:].Elems(0, 0)
	if !ok || row <= 0 || row > (1<<40)/int64(b.opt.MaxTokens) {
		return 0, fmt.Errorf("cuda: input %q: shape %v is empty, symbolic past T or too large", in.Name, in.Shape)
	}
	for _, prev := range b.named {
		if prev.name == in.Name {
			return 0, fmt.Errorf("cuda: input %q declared twice", in.Name)
		}
	}
	dev, err := b.alloc(uint64(row)*uint64(b.opt.MaxTokens)*4, "input "+in.Name)
	if err != nil {
		return 0, err
	}
	b.named = append(b.named, namedInput{name: in.Name, dt: in.DType, row: row, dev: dev})
	return dev, nil
}

// checkNamed checks bt.Inputs against the plan's named inputs: each must
// be there with exactly T rows of its dtype, and no other name may be.
func (b *Backend) checkNamed(bt *runtime.Batch) error {
	t := int64(len(bt.Tokens))
	for _, in := range b.named {
		v, ok := bt.Inputs[in.name]
		if !ok {
			return fmt.Errorf("cuda: step input %q missing from Batch.Inputs", in.name)
		}
		want := t * in.row
		switch {
		case in.dt == ir.F32 && v.I32 == nil && int64(len(v.F32)) == want:
		case in.dt == ir.I32 && v.F32 == nil && int64(len(v.I32)) == want:
		default:
			return fmt.Errorf("cuda: step input %q: %d f32 and %d i32 values, want %d %v (%d tokens × %d)",
				in.name, len(v.F32), len(v.I32), want, in.dt, t, in.row)
		}
	}
	if len(bt.Inputs) != len(b.named) {
		for name := range bt.Inputs {
			if !slices.ContainsFunc(b.named, func(in namedInput) bool { return in.name == name }) {
				return fmt.Errorf("cuda: step input %q: the plan has no such input", name)
			}
		}
	}
	return nil
}

// uploadNamed copies the step's named inputs to the device (checked by
// checkNamed).
func (b *Backend) uploadNamed(bt *runtime.Batch) error {
	for _, in := range b.named {
		v := bt.Inputs[in.name]
		var p unsafe.Pointer
		var n int
		if in.dt == ir.F32 {
			p, n = unsafe.Pointer(unsafe.SliceData(v.F32)), len(v.F32)
		} else {
			p, n = unsafe.Pointer(unsafe.SliceData(v.I32)), len(v.I32)
		}
		if n == 0 {
			continue
		}
		if err := b.d.check(b.d.cuMemcpyHtoD(in.dev, p, uint64(4*n)), "upload input "+in.name); err != nil {
			return err
		}
	}
	return nil
}
