package hf

import (
	"math"

	"github.com/inference-pio/pio/ir"
)

// BF16ToFloat32 converts a bfloat16 bit pattern to float32. The conversion is
// exact: bfloat16 is the top half of a float32.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// Float32ToBF16 converts f to bfloat16, rounding to nearest even as PyTorch
// does. Overflow gives ±Inf; a NaN stays a (quiet) NaN.
func Float32ToBF16(f float32) uint16 { return ir.ToBF16(f) }

// F16ToFloat32 converts an IEEE 754 half-precision bit pattern to float32.
// The conversion is exact, subnormals, infinities and NaN payloads included.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch exp {
	case 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0: // zero or subnormal: mant × 2⁻²⁴, exact in float32
		f := float32(mant) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	}
}

// Float32ToF16 converts f to IEEE 754 half precision, rounding to nearest
// even. Values too large become ±Inf, values too small become subnormals or
// ±0, and a NaN stays a NaN.
func Float32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7c00 | 0x0200 | uint16(mant>>13) // quiet NaN, payload kept
	}
	e := exp - 127 + 15 // biased half exponent
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e <= 0:
		if e < -10 { // below half the smallest subnormal
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - e)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && h&1 == 1 {
			h++ // may carry into the smallest normal, which is correct
		}
		return sign | uint16(h)
	default:
		h := uint32(e)<<10 | mant>>13
		rem := mant & 0x1fff
		if rem > 0x1000 || rem == 0x1000 && h&1 == 1 {
			h++ // may carry into the exponent, up to Inf, which is correct
		}
		return sign | uint16(h)
	}
}
