package kern

import "golang.org/x/sys/cpu"

// useAVX2 selects the assembly kernels and useAVX512 the AVX-512 dot
// products (f32, bf16, int8, int4, fp8; the rest stays AVX2). setActive sets
// both from the active level; tests switch them to run every level on the
// same inputs.
var useAVX2, useAVX512 bool

// detectLevel is the highest level this CPU runs.
func detectLevel() Level {
	switch {
	case !cpu.X86.HasAVX2 || !cpu.X86.HasFMA:
		return Generic
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL:
		return AVX512
	}
	return AVX2
}

//go:noescape
func dotF32AVX512(a, b *float32, n int) float32

//go:noescape
func dotBF16AVX512(a *float32, b *uint16, n int) float32

//go:noescape
func dotQ8AVX512(x *float32, q *int8, scale *float32, groups, group int) float32

//go:noescape
func dotQ4AVX512(x *float32, q *byte, scale *float32, groups, group int) float32

//go:noescape
func dotF8AVX512(x *float32, q *byte, scale *float32, groups, group int) float32

// The assembly kernels. n, K are multiples of 8; groups·group of 32.

//go:noescape
func dotF32AVX2(a, b *float32, n int) float32

//go:noescape
func dotBF16AVX2(a *float32, b *uint16, n int) float32

//go:noescape
func dotQ8AVX2(x *float32, q *int8, scale *float32, groups, group int) float32

//go:noescape
func dotQ4AVX2(x *float32, q *byte, scale *float32, groups, group int) float32

//go:noescape
func dotF8AVX2(x *float32, q *byte, scale *float32, groups, group int) float32

//go:noescape
func gemm2x4AVX2(x *float32, ldx int, w *float32, ldw int, K int, out *[8]float32)

//go:noescape
func decodeBF16AVX2(dst *float32, src *uint16, n int)

//go:noescape
func dequantQ8AVX2(dst *float32, q *int8, scale *float32, groups, group int)

//go:noescape
func dequantQ4AVX2(dst *float32, q *byte, scale *float32, groups, group int)

//go:noescape
func dequantF8AVX2(dst *float32, q *byte, scale *float32, groups, group int)
