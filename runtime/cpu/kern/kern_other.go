//go:build !amd64

package kern

var useAVX2, useAVX512 bool

// detectLevel is the highest level this CPU runs: the portable Go.
func detectLevel() Level { return Generic }

func dotF32AVX2(a, b *float32, n int) float32                                  { panic("unreachable") }
func dotBF16AVX2(a *float32, b *uint16, n int) float32                         { panic("unreachable") }
func dotQ8AVX2(x *float32, q *int8, scale *float32, groups, group int) float32 { panic("unreachable") }
func dotQ4AVX2(x *float32, q *byte, scale *float32, groups, group int) float32 { panic("unreachable") }
func dotF8AVX2(x *float32, q *byte, scale *float32, groups, group int) float32 { panic("unreachable") }
func gemm2x4AVX2(x *float32, ldx int, w *float32, ldw int, K int, out *[8]float32) {
	panic("unreachable")
}
func decodeBF16AVX2(dst *float32, src *uint16, n int) { panic("unreachable") }

func dequantQ8AVX2(dst *float32, q *int8, scale *float32, groups, group int) { panic("unreachable") }
func dequantQ4AVX2(dst *float32, q *byte, scale *float32, groups, group int) { panic("unreachable") }
func dequantF8AVX2(dst *float32, q *byte, scale *float32, groups, group int) { panic("unreachable") }

func dotF32AVX512(a, b *float32, n int) float32          { panic("unreachable") }
func dotBF16AVX512(a *float32, b *uint16, n int) float32 { panic("unreachable") }
func dotQ8AVX512(x *float32, q *int8, scale *float32, groups, group int) float32 {
	panic("unreachable")
}
func dotQ4AVX512(x *float32, q *byte, scale *float32, groups, group int) float32 {
	panic("unreachable")
}
func dotF8AVX512(x *float32, q *byte, scale *float32, groups, group int) float32 {
	panic("unreachable")
}
