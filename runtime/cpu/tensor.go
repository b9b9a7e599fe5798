package cpu

import (
	"encoding/binary"
	"math"
	"sync"
	"unsafe"

	"github.com/inference-pio/pio/ir"
)

// littleEndian reports whether the host stores numbers as the engine does,
// so that aligned weight bytes can be used in place.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// tensor is an operand as the kernels see it: f32 or i32 storage sized for
// the largest step (MaxTokens), to be cut to the step's size with elems.
type tensor struct {
	dt    ir.DType
	shape ir.Shape
	f32   []float32
	i32   []int32
}

// matrix is a static 2-D float operand kept in its stored dtype: a weight
// (f32, bf16 or f16) or an f32 buffer. Rows are decoded to f32 on use.
type matrix struct {
	rows, cols int
	dt         ir.DType
	f32        []float32 // dt == F32
	u16        []uint16  // dt == BF16 or F16: the raw bits
	u8         []byte    // dt == I8, U8 or F8E4M3: codes of a quantized weight (quant.go)
}

// rowInto decodes row i into dst[:cols].
func (m *matrix) rowInto(i int, dst []float32) {
	dst = dst[:m.cols]
	switch m.dt {
	case ir.F32:
		copy(dst, m.f32[i*m.cols:(i+1)*m.cols])
	case ir.BF16:
		decodeBF16(dst, m.u16[i*m.cols:(i+1)*m.cols])
	case ir.F16:
		decodeF16(dst, m.u16[i*m.cols:(i+1)*m.cols])
	}
}

// decodeBF16 widens bfloat16 bits to f32 (exact: bf16 is the top half of an f32).
func decodeBF16(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

// decodeF16 widens IEEE half bits to f32 (exact) through a table.
func decodeF16(dst []float32, src []uint16) {
	tab := f16Table()
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = tab[h]
	}
}

var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	var tab [1 << 16]float32
	for i := range tab {
		tab[i] = f16ToF32(uint16(i))
	}
	return &tab
})

// f16ToF32 converts IEEE 754 half-precision bits to f32, exactly: subnormals,
// infinities and NaN payloads included.
func f16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch exp {
	case 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0:
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// viewF32 returns the little-endian f32 values in data: the bytes themselves
// when they are aligned and the host is little-endian, a decoded copy
// otherwise. data is never written.
func viewF32(data []byte) []float32 {
	n := len(data) / 4
	if n == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&data[0]))%4 == 0 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&data[0])), n)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return out
}

// viewU16 is viewF32 for 16-bit elements (bf16 and f16 bits).
func viewU16(data []byte) []uint16 {
	n := len(data) / 2
	if n == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&data[0]))%2 == 0 {
		return unsafe.Slice((*uint16)(unsafe.Pointer(&data[0])), n)
	}
	out := make([]uint16, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(data[2*i:])
	}
	return out
}

// i32View reinterprets n f32 slots of the arena as int32s.
func i32View(f []float32) []int32 {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&f[0])), len(f))
}
