package ir

import (
	"fmt"
	"math"
)

// DType is an element type. Numbers are stored in engine files: append only.
type DType uint8

const (
	DInvalid DType = 0
	F32      DType = 1
	BF16     DType = 2
	F16      DType = 3
	I32      DType = 4
	I64      DType = 5
	I8       DType = 6
	U8       DType = 7
	// F8E4M3 is OCP FP8 E4M3 (sign, 4 exponent bits with bias 7, 3 mantissa
	// bits; max 448, no infinities): the codes of fp8-quantized weights.
	F8E4M3 DType = 8
)

var dtypeInfo = [...]struct {
	name string
	size int
}{
	DInvalid: {"invalid", 0},
	F32:      {"f32", 4},
	BF16:     {"bf16", 2},
	F16:      {"f16", 2},
	I32:      {"i32", 4},
	I64:      {"i64", 8},
	I8:       {"i8", 1},
	U8:       {"u8", 1},
	F8E4M3:   {"f8e4m3", 1},
}

// String returns the text-form name of d ("f32", "bf16", ...).
func (d DType) String() string {
	if int(d) < len(dtypeInfo) && dtypeInfo[d].name != "" {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// Size is the size of one element in bytes (0 for an unknown dtype).
func (d DType) Size() int {
	if int(d) < len(dtypeInfo) {
		return dtypeInfo[d].size
	}
	return 0
}

// Valid reports whether d is a known dtype.
func (d DType) Valid() bool { return d != DInvalid && int(d) < len(dtypeInfo) }

// IsFloat reports whether d is a floating-point type.
func (d DType) IsFloat() bool { return d == F32 || d == BF16 || d == F16 }

// ParseDType parses a dtype's text name.
func ParseDType(s string) (DType, error) {
	for i, info := range dtypeInfo {
		if i != 0 && info.name == s {
			return DType(i), nil
		}
	}
	return DInvalid, fmt.Errorf("unknown dtype %q", s)
}

// ToBF16 rounds f to bfloat16 bits, to nearest even as PyTorch and the CUDA
// kernels' pio_st do: overflow gives ±Inf, a NaN stays a quiet NaN. The
// build (weight conversion) and the CPU backend (bf16 KV caches) share it.
func ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
