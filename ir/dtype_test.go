package ir

import (
	"math"
	"testing"
)

func TestToBF16(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want uint16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // tie, even below
		{0x3f818000, 0x3f82}, // tie, even above
		{0x3f808001, 0x3f81}, // above the tie
		{0xbf807fff, 0xbf80}, // below the tie, negative
		{0x7f7fffff, 0x7f80}, // overflow to +Inf
		{0x7f800001, 0x7fc0}, // NaN stays NaN
	} {
		if got := ToBF16(math.Float32frombits(c.in)); got != c.want {
			t.Errorf("ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}
