package compiler

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
)

// convert writes checkpoint tensor t into dst in the engine dtype want.
// Same-dtype copies are byte copies; f32 -> bf16 rounds to nearest even.
func convert(t *hf.Tensor, want ir.DType, dst []byte) error {
	n := t.NumElements()
	if int64(len(dst)) != n*int64(want.Size()) {
		return fmt.Errorf("tensor %q: engine slot is %d bytes, want %d", t.Name, len(dst), n*int64(want.Size()))
	}
	if (t.DType == hf.BF16 && want == ir.BF16) || (t.DType == hf.F32 && want == ir.F32) || (t.DType == hf.F16 && want == ir.F16) {
		copy(dst, t.Data)
		return nil
	}
	vals, err := t.Float32()
	if err != nil {
		return fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	switch want {
	case ir.F32:
		for i, v := range vals {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case ir.BF16:
		for i, v := range vals {
			binary.LittleEndian.PutUint16(dst[2*i:], hf.Float32ToBF16(v))
		}
	default:
		return fmt.Errorf("tensor %q: cannot store weights as %v", t.Name, want)
	}
	return nil
}
