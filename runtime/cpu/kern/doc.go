// Package kern holds the CPU backend's inner loops: dot products of an f32
// vector with a row stored as f32, bf16 or group-quantized int8, int4 or fp8
// (e4m3), a 2×4 register-blocked f32 GEMM micro-kernel, and the row decoders
// that feed it. Each kernel has a portable Go version (the reference, always
// compiled) and, on amd64 CPUs with AVX2 and FMA, an assembly version chosen
// once at start-up (see Features); the dot products also have AVX-512
// versions, used where the CPU has AVX512F, BW and VL. Fast and portable
// results agree to f32 rounding of a different summation order; kern_test
// checks every level on random inputs.
//
// kern is not a BLAS: no transposes, no strides other than a row stride, no
// threading (the backend's worker pool splits rows), no allocation.
//
// # Quantized rows
//
// A quantized row of K weights is split into groups of G consecutive
// weights (G a multiple of 32; the compiler uses 32 by default), each with
// one f32 scale: w[i] = scale[i/G] · q[i].
//
//   - int8: q is int8 in [-127, 127], one byte per weight.
//   - int4: q is in [-8, 7], stored q+8 in a nibble, two weights per byte.
//     Within each block of 32 weights (16 bytes), byte j holds weight j in its
//     low nibble and weight j+16 in its high nibble (GGML's Q4_0 order, which
//     unpacks with one shift and one mask per 8 lanes).
//   - fp8: q is an OCP FP8 E4M3 byte (bias 7, max 448, no infinities). The
//     compiler never emits subnormal codes (they round to zero or to the
//     smallest normal), so decoding is a shift and one multiply by 2¹²⁰ and
//     never touches f32 denormals.
package kern
