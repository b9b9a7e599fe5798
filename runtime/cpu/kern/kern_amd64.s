#include "textflag.h"

// Horizontal sum of Y0 into X0 (clobbers X1).
#define HSUM \
	VEXTRACTF128 $1, Y0, X1 \
	VADDPS       X1, X0, X0 \
	VHADDPS      X0, X0, X0 \
	VHADDPS      X0, X0, X0

// func dotF32AVX2(a, b *float32, n int) float32
TEXT ·dotF32AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

f32loop32:
	CMPQ        CX, $32
	JL          f32loop8
	VMOVUPS     (SI), Y4
	VMOVUPS     32(SI), Y5
	VMOVUPS     64(SI), Y6
	VMOVUPS     96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         f32loop32

f32loop8:
	CMPQ        CX, $8
	JL          f32done
	VMOVUPS     (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         f32loop8

f32done:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotBF16AVX2(a *float32, b *uint16, n int) float32
TEXT ·dotBF16AVX2(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

bfloop32:
	CMPQ        CX, $32
	JL          bfloop8
	VPMOVZXWD   (DI), Y4
	VPMOVZXWD   16(DI), Y5
	VPMOVZXWD   32(DI), Y6
	VPMOVZXWD   48(DI), Y7
	VPSLLD      $16, Y4, Y4
	VPSLLD      $16, Y5, Y5
	VPSLLD      $16, Y6, Y6
	VPSLLD      $16, Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ        $128, SI
	ADDQ        $64, DI
	SUBQ        $32, CX
	JMP         bfloop32

bfloop8:
	CMPQ        CX, $8
	JL          bfdone
	VPMOVZXWD   (DI), Y4
	VPSLLD      $16, Y4, Y4
	VFMADD231PS (SI), Y4, Y0
	ADDQ        $32, SI
	ADDQ        $16, DI
	SUBQ        $8, CX
	JMP         bfloop8

bfdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	HSUM
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotQ8AVX2(x *float32, q *int8, scale *float32, groups, group int) float32
TEXT ·dotQ8AVX2(SB), NOSPLIT, $0-44
	MOVQ   x+0(FP), SI
	MOVQ   q+8(FP), DI
	MOVQ   scale+16(FP), R8
	MOVQ   groups+24(FP), CX
	MOVQ   group+32(FP), DX
	VXORPS Y15, Y15, Y15

q8group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   DX, BX

q8inner:
	VPMOVSXBD   (DI), Y4
	VPMOVSXBD   8(DI), Y5
	VPMOVSXBD   16(DI), Y6
	VPMOVSXBD   24(DI), Y7
	VCVTDQ2PS   Y4, Y4
	VCVTDQ2PS   Y5, Y5
	VCVTDQ2PS   Y6, Y6
	VCVTDQ2PS   Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ        $32, DI
	ADDQ        $128, SI
	SUBQ        $32, BX
	JNZ         q8inner

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VBROADCASTSS (R8), Y8
	VFMADD231PS  Y8, Y0, Y15
	ADDQ         $4, R8
	DECQ         CX
	JNZ          q8group

	VMOVAPS Y15, Y0
	HSUM
	VZEROUPPER
	MOVSS   X0, ret+40(FP)
	RET

// func dotQ4AVX2(x *float32, q *byte, scale *float32, groups, group int) float32
TEXT ·dotQ4AVX2(SB), NOSPLIT, $0-44
	MOVQ         x+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         scale+16(FP), R8
	MOVQ         groups+24(FP), CX
	MOVQ         group+32(FP), DX
	VXORPS       Y15, Y15, Y15
	MOVL         $15, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $8, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13

q4group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   DX, BX

q4inner:
	VPMOVZXBD   (DI), Y4
	VPMOVZXBD   8(DI), Y5
	VPSRLD      $4, Y4, Y6
	VPSRLD      $4, Y5, Y7
	VPAND       Y14, Y4, Y4
	VPAND       Y14, Y5, Y5
	VPSUBD      Y13, Y4, Y4
	VPSUBD      Y13, Y5, Y5
	VPSUBD      Y13, Y6, Y6
	VPSUBD      Y13, Y7, Y7
	VCVTDQ2PS   Y4, Y4
	VCVTDQ2PS   Y5, Y5
	VCVTDQ2PS   Y6, Y6
	VCVTDQ2PS   Y7, Y7
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ        $16, DI
	ADDQ        $128, SI
	SUBQ        $32, BX
	JNZ         q4inner

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VBROADCASTSS (R8), Y8
	VFMADD231PS  Y8, Y0, Y15
	ADDQ         $4, R8
	DECQ         CX
	JNZ          q4group

	VMOVAPS Y15, Y0
	HSUM
	VZEROUPPER
	MOVSS   X0, ret+40(FP)
	RET

// One E4M3 byte per dword lane of R -> f32 in R (T is scratch):
// sign = (b<<24) & 0x80000000; R = float((b<<25)>>5) * 2^120 | sign.
#define F8DECODE(R, T) \
	VPSLLD  $24, R, T   \
	VPSLLD  $25, R, R   \
	VPAND   Y12, T, T   \
	VPSRLD  $5, R, R    \
	VMULPS  Y11, R, R   \
	VPOR    T, R, R

// func dotF8AVX2(x *float32, q *byte, scale *float32, groups, group int) float32
TEXT ·dotF8AVX2(SB), NOSPLIT, $0-44
	MOVQ         x+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         scale+16(FP), R8
	MOVQ         groups+24(FP), CX
	MOVQ         group+32(FP), DX
	VXORPS       Y15, Y15, Y15
	MOVL         $0x80000000, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Y12
	MOVL         $0x7b800000, AX // 2^120
	VMOVD        AX, X11
	VPBROADCASTD X11, Y11

f8group:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   DX, BX

f8inner:
	VPMOVZXBD   (DI), Y4
	VPMOVZXBD   8(DI), Y5
	VPMOVZXBD   16(DI), Y6
	VPMOVZXBD   24(DI), Y7
	F8DECODE(Y4, Y8)
	F8DECODE(Y5, Y9)
	F8DECODE(Y6, Y10)
	F8DECODE(Y7, Y8)
	VFMADD231PS (SI), Y4, Y0
	VFMADD231PS 32(SI), Y5, Y1
	VFMADD231PS 64(SI), Y6, Y2
	VFMADD231PS 96(SI), Y7, Y3
	ADDQ        $32, DI
	ADDQ        $128, SI
	SUBQ        $32, BX
	JNZ         f8inner

	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VBROADCASTSS (R8), Y8
	VFMADD231PS  Y8, Y0, Y15
	ADDQ         $4, R8
	DECQ         CX
	JNZ          f8group

	VMOVAPS Y15, Y0
	HSUM
	VZEROUPPER
	MOVSS   X0, ret+40(FP)
	RET

// func gemm2x4AVX2(x *float32, ldx int, w *float32, ldw int, K int, out *[8]float32)
// Accumulators Y0-Y3: x row 0 × w rows 0-3; Y4-Y7: x row 1 × w rows 0-3.
TEXT ·gemm2x4AVX2(SB), NOSPLIT, $0-48
	MOVQ   x+0(FP), SI
	MOVQ   ldx+8(FP), AX
	MOVQ   w+16(FP), DI
	MOVQ   ldw+24(FP), BX
	MOVQ   K+32(FP), CX
	SHLQ   $2, AX
	SHLQ   $2, BX
	LEAQ   (SI)(AX*1), R9       // x row 1
	LEAQ   (DI)(BX*1), R10      // w row 1
	LEAQ   (R10)(BX*1), R11     // w row 2
	LEAQ   (R11)(BX*1), R12     // w row 3
	XORQ   DX, DX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gemmloop:
	VMOVUPS     (DI)(DX*4), Y8
	VMOVUPS     (R10)(DX*4), Y9
	VMOVUPS     (R11)(DX*4), Y10
	VMOVUPS     (R12)(DX*4), Y11
	VMOVUPS     (SI)(DX*4), Y12
	VMOVUPS     (R9)(DX*4), Y13
	VFMADD231PS Y12, Y8, Y0
	VFMADD231PS Y12, Y9, Y1
	VFMADD231PS Y12, Y10, Y2
	VFMADD231PS Y12, Y11, Y3
	VFMADD231PS Y13, Y8, Y4
	VFMADD231PS Y13, Y9, Y5
	VFMADD231PS Y13, Y10, Y6
	VFMADD231PS Y13, Y11, Y7
	ADDQ        $8, DX
	CMPQ        DX, CX
	JL          gemmloop

	// Reduce: hadd(hadd(a0,a1), hadd(a2,a3)), then fold the 128-bit halves.
	MOVQ         out+40(FP), R8
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VMOVUPS      X0, (R8)
	VHADDPS      Y5, Y4, Y4
	VHADDPS      Y7, Y6, Y6
	VHADDPS      Y6, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VADDPS       X5, X4, X4
	VMOVUPS      X4, 16(R8)
	VZEROUPPER
	RET

// func decodeBF16AVX2(dst *float32, src *uint16, n int)
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX

decloop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       decloop
	VZEROUPPER
	RET

// func dequantQ8AVX2(dst *float32, q *int8, scale *float32, groups, group int)
TEXT ·dequantQ8AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), SI
	MOVQ q+8(FP), DI
	MOVQ scale+16(FP), R8
	MOVQ groups+24(FP), CX
	MOVQ group+32(FP), DX

dq8group:
	VBROADCASTSS (R8), Y8
	MOVQ         DX, BX

dq8inner:
	VPMOVSXBD (DI), Y4
	VPMOVSXBD 8(DI), Y5
	VPMOVSXBD 16(DI), Y6
	VPMOVSXBD 24(DI), Y7
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VMULPS    Y8, Y4, Y4
	VMULPS    Y8, Y5, Y5
	VMULPS    Y8, Y6, Y6
	VMULPS    Y8, Y7, Y7
	VMOVUPS   Y4, (SI)
	VMOVUPS   Y5, 32(SI)
	VMOVUPS   Y6, 64(SI)
	VMOVUPS   Y7, 96(SI)
	ADDQ      $32, DI
	ADDQ      $128, SI
	SUBQ      $32, BX
	JNZ       dq8inner
	ADDQ      $4, R8
	DECQ      CX
	JNZ       dq8group
	VZEROUPPER
	RET

// func dequantQ4AVX2(dst *float32, q *byte, scale *float32, groups, group int)
TEXT ·dequantQ4AVX2(SB), NOSPLIT, $0-40
	MOVQ         dst+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         scale+16(FP), R8
	MOVQ         groups+24(FP), CX
	MOVQ         group+32(FP), DX
	MOVL         $15, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $8, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13

dq4group:
	VBROADCASTSS (R8), Y8
	MOVQ         DX, BX

dq4inner:
	VPMOVZXBD (DI), Y4
	VPMOVZXBD 8(DI), Y5
	VPSRLD    $4, Y4, Y6
	VPSRLD    $4, Y5, Y7
	VPAND     Y14, Y4, Y4
	VPAND     Y14, Y5, Y5
	VPSUBD    Y13, Y4, Y4
	VPSUBD    Y13, Y5, Y5
	VPSUBD    Y13, Y6, Y6
	VPSUBD    Y13, Y7, Y7
	VCVTDQ2PS Y4, Y4
	VCVTDQ2PS Y5, Y5
	VCVTDQ2PS Y6, Y6
	VCVTDQ2PS Y7, Y7
	VMULPS    Y8, Y4, Y4
	VMULPS    Y8, Y5, Y5
	VMULPS    Y8, Y6, Y6
	VMULPS    Y8, Y7, Y7
	VMOVUPS   Y4, (SI)
	VMOVUPS   Y5, 32(SI)
	VMOVUPS   Y6, 64(SI)
	VMOVUPS   Y7, 96(SI)
	ADDQ      $16, DI
	ADDQ      $128, SI
	SUBQ      $32, BX
	JNZ       dq4inner
	ADDQ      $4, R8
	DECQ      CX
	JNZ       dq4group
	VZEROUPPER
	RET

// func dequantF8AVX2(dst *float32, q *byte, scale *float32, groups, group int)
TEXT ·dequantF8AVX2(SB), NOSPLIT, $0-40
	MOVQ         dst+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         scale+16(FP), R8
	MOVQ         groups+24(FP), CX
	MOVQ         group+32(FP), DX
	MOVL         $0x80000000, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Y12
	MOVL         $0x7b800000, AX // 2^120
	VMOVD        AX, X11
	VPBROADCASTD X11, Y11

df8group:
	VBROADCASTSS (R8), Y13
	MOVQ         DX, BX

df8inner:
	VPMOVZXBD (DI), Y4
	VPMOVZXBD 8(DI), Y5
	VPMOVZXBD 16(DI), Y6
	VPMOVZXBD 24(DI), Y7
	F8DECODE(Y4, Y8)
	F8DECODE(Y5, Y9)
	F8DECODE(Y6, Y10)
	F8DECODE(Y7, Y8)
	VMULPS    Y13, Y4, Y4
	VMULPS    Y13, Y5, Y5
	VMULPS    Y13, Y6, Y6
	VMULPS    Y13, Y7, Y7
	VMOVUPS   Y4, (SI)
	VMOVUPS   Y5, 32(SI)
	VMOVUPS   Y6, 64(SI)
	VMOVUPS   Y7, 96(SI)
	ADDQ      $32, DI
	ADDQ      $128, SI
	SUBQ      $32, BX
	JNZ       df8inner
	ADDQ      $4, R8
	DECQ      CX
	JNZ       df8group
	VZEROUPPER
	RET
