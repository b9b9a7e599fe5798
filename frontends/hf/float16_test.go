package hf

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestF16Exhaustive checks every half-precision bit pattern against a
// float64 oracle, and that converting back gives the same bits.
func TestF16Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		sign, exp, mant := h>>15, int(h>>10)&0x1f, float64(h&0x3ff)
		var want float64
		switch exp {
		case 0:
			want = math.Ldexp(mant, -24)
		case 0x1f:
			want = math.Inf(1)
			if mant != 0 {
				want = math.NaN()
			}
		default:
			want = math.Ldexp(1+mant/1024, exp-15)
		}
		if sign == 1 {
			want = -want
		}
		got := F16ToFloat32(h)
		if math.IsNaN(want) {
			back := Float32ToF16(got)
			if !math.IsNaN(float64(got)) || back&0x7c00 != 0x7c00 || back&0x3ff == 0 || back&0x8000 != h&0x8000 {
				t.Errorf("F16 %#04x: got %v, back %#04x; want a NaN of the same sign", h, got, back)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (sign == 1) {
			t.Errorf("F16ToFloat32(%#04x) = %v, want %v", h, got, want)
		}
		if back := Float32ToF16(got); back != h {
			t.Errorf("Float32ToF16(F16ToFloat32(%#04x)) = %#04x", h, back)
		}
	}
}

func TestFloat32ToF16Rounding(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1 + 0x1p-11, 0x3c00},   // tie, to even
		{1 + 3*0x1p-11, 0x3c02}, // tie, to even (up)
		{1 + 0x1p-11 + 0x1p-20, 0x3c01},
		{65504, 0x7bff},
		{65519, 0x7bff},
		{65520, 0x7c00}, // tie between 65504 and 65536: to even, Inf
		{1e10, 0x7c00},
		{-1e10, 0xfc00},
		{0x1p-25, 0x0000}, // tie between 0 and the smallest subnormal
		{0x1p-25 * 1.5, 0x0001},
		{3 * 0x1p-25, 0x0002},      // tie between 1 and 2 units: to even
		{1023.5 * 0x1p-24, 0x0400}, // tie, rounds up into the smallest normal
		{0x1p-26, 0x0000},
		{-0x1p-30, 0x8000},
		{1e-45, 0x0000}, // float32 subnormal
	}
	for _, tt := range tests {
		if got := Float32ToF16(tt.in); got != tt.want {
			t.Errorf("Float32ToF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

// TestFloat32ToF16Nearest checks on random inputs that the result is a
// nearest half, ties to even.
func TestFloat32ToF16Nearest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		x := math.Float32frombits(r.Uint32())
		if math.IsNaN(float64(x)) || math.Abs(float64(x)) >= 65520 {
			continue
		}
		h := Float32ToF16(x)
		d := math.Abs(float64(F16ToFloat32(h)) - float64(x))
		for _, n := range []uint16{h + 1, h - 1, h ^ 0x8000} {
			if n&0x7c00 == 0x7c00 {
				continue
			}
			dn := math.Abs(float64(F16ToFloat32(n)) - float64(x))
			if dn < d || dn == d && n&1 == 0 && h&1 == 1 {
				t.Fatalf("Float32ToF16(%g) = %#04x (off by %g), but %#04x is off by %g", x, h, d, n, dn)
			}
		}
	}
}

func TestFloat32ToBF16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{1 + 0x1p-8, 0x3f80},   // tie, to even
		{1 + 3*0x1p-8, 0x3f82}, // tie, to even (up)
		{1 + 0x1p-8 + 0x1p-20, 0x3f81},
		{math.MaxFloat32, 0x7f80},
		{float32(math.Inf(-1)), 0xff80},
		{float32(math.Copysign(0, -1)), 0x8000},
		{0x1p-133, 0x0001},
	}
	for _, tt := range tests {
		if got := Float32ToBF16(tt.in); got != tt.want {
			t.Errorf("Float32ToBF16(%g) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
	if got := Float32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 && got&0x40 == 0 {
		t.Errorf("Float32ToBF16(NaN) = %#04x, not a NaN", got)
	}
	for i := range 1 << 16 {
		b := uint16(i)
		if f := BF16ToFloat32(b); !math.IsNaN(float64(f)) && Float32ToBF16(f) != b {
			t.Errorf("Float32ToBF16(BF16ToFloat32(%#04x)) = %#04x", b, Float32ToBF16(f))
		}
	}
}
