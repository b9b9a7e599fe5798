package compiler

import (
	"fmt"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
)

// materialize writes plan weight t into dst in t.DType: a checkpoint tensor
// converted, or a derived weight built from its recipe (a fused QKV
// weight, stacked experts), so the runtime never assembles weights.
func materialize(t ir.PlanTensor, lookup func(string) (*hf.Tensor, bool), dst []byte) error {
	if t.Recipe == nil {
		src, ok := lookup(t.Name)
		if !ok {
			return fmt.Errorf("tensor %q is not in the checkpoint", t.Name)
		}
		return convert(src, t.DType, dst)
	}
	switch t.Recipe.Op {
	case ir.OpConcat:
		axis := int(t.Recipe.Attr().Int("axis"))
		if axis < 0 || axis >= len(t.Shape) {
			return fmt.Errorf("weight %q: concat axis %d out of range", t.Name, axis)
		}
		outer := 1
		for _, d := range t.Shape[:axis] {
			outer *= int(d)
		}
		inner := t.DType.Size()
		for _, d := range t.Shape[axis+1:] {
			inner *= int(d)
		}
		off, rowBytes := 0, inner*int(t.Shape[axis])
		if len(dst) != outer*rowBytes {
			return fmt.Errorf("weight %q: %d bytes for shape %v", t.Name, len(dst), t.Shape)
		}
		for _, part := range t.Recipe.Parts {
			chunk := inner * int(part.Shape[axis])
			buf := make([]byte, outer*chunk)
			if err := materialize(part, lookup, buf); err != nil {
				return fmt.Errorf("weight %q: %w", t.Name, err)
			}
			for o := 0; o < outer; o++ {
				copy(dst[o*rowBytes+off:o*rowBytes+off+chunk], buf[o*chunk:(o+1)*chunk])
			}
			off += chunk
		}
		return nil
	}
	return fmt.Errorf("weight %q: no build-time rule for op %v", t.Name, t.Recipe.Op)
}
