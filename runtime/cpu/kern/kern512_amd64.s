#include "textflag.h"

// AVX-512 versions of the hot dot products: same structure as the AVX2 ones
// with 16 lanes per register. Each group of 32 weights is two registers.

// Horizontal sum of Z0 into X0 (clobbers Z1).
#define HSUM512 \
	VEXTRACTF64X4 $1, Z0, Y1 \
	VADDPS        Y1, Y0, Y0 \
	VEXTRACTF128  $1, Y0, X1 \
	VADDPS        X1, X0, X0 \
	VHADDPS       X0, X0, X0 \
	VHADDPS       X0, X0, X0

// func dotF32AVX512(a, b *float32, n int) float32
// n is a multiple of 16.
TEXT ·dotF32AVX512(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3

f5loop64:
	CMPQ        CX, $64
	JL          f5loop16
	VMOVUPS     (SI), Z4
	VMOVUPS     64(SI), Z5
	VMOVUPS     128(SI), Z6
	VMOVUPS     192(SI), Z7
	VFMADD231PS (DI), Z4, Z0
	VFMADD231PS 64(DI), Z5, Z1
	VFMADD231PS 128(DI), Z6, Z2
	VFMADD231PS 192(DI), Z7, Z3
	ADDQ        $256, SI
	ADDQ        $256, DI
	SUBQ        $64, CX
	JMP         f5loop64

f5loop16:
	CMPQ        CX, $16
	JL          f5done
	VMOVUPS     (SI), Z4
	VFMADD231PS (DI), Z4, Z0
	ADDQ        $64, SI
	ADDQ        $64, DI
	SUBQ        $16, CX
	JMP         f5loop16

f5done:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	HSUM512
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotBF16AVX512(a *float32, b *uint16, n int) float32
// n is a multiple of 16.
TEXT ·dotBF16AVX512(SB), NOSPLIT, $0-28
	MOVQ   a+0(FP), SI
	MOVQ   b+8(FP), DI
	MOVQ   n+16(FP), CX
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	VXORPS Z2, Z2, Z2
	VXORPS Z3, Z3, Z3

b5loop64:
	CMPQ        CX, $64
	JL          b5loop16
	VPMOVZXWD   (DI), Z4
	VPMOVZXWD   32(DI), Z5
	VPMOVZXWD   64(DI), Z6
	VPMOVZXWD   96(DI), Z7
	VPSLLD      $16, Z4, Z4
	VPSLLD      $16, Z5, Z5
	VPSLLD      $16, Z6, Z6
	VPSLLD      $16, Z7, Z7
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	VFMADD231PS 128(SI), Z6, Z2
	VFMADD231PS 192(SI), Z7, Z3
	ADDQ        $256, SI
	ADDQ        $128, DI
	SUBQ        $64, CX
	JMP         b5loop64

b5loop16:
	CMPQ        CX, $16
	JL          b5done
	VPMOVZXWD   (DI), Z4
	VPSLLD      $16, Z4, Z4
	VFMADD231PS (SI), Z4, Z0
	ADDQ        $64, SI
	ADDQ        $32, DI
	SUBQ        $16, CX
	JMP         b5loop16

b5done:
	VADDPS Z1, Z0, Z0
	VADDPS Z3, Z2, Z2
	VADDPS Z2, Z0, Z0
	HSUM512
	VZEROUPPER
	MOVSS  X0, ret+24(FP)
	RET

// func dotQ8AVX512(x *float32, q *int8, scale *float32, groups, group int) float32
TEXT ·dotQ8AVX512(SB), NOSPLIT, $0-44
	MOVQ   x+0(FP), SI
	MOVQ   q+8(FP), DI
	MOVQ   scale+16(FP), R8
	MOVQ   groups+24(FP), CX
	MOVQ   group+32(FP), DX
	VXORPS Z15, Z15, Z15

q5group:
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	MOVQ   DX, BX

q5inner:
	VPMOVSXBD   (DI), Z4
	VPMOVSXBD   16(DI), Z5
	VCVTDQ2PS   Z4, Z4
	VCVTDQ2PS   Z5, Z5
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	ADDQ        $32, DI
	ADDQ        $128, SI
	SUBQ        $32, BX
	JNZ         q5inner

	VADDPS       Z1, Z0, Z0
	VBROADCASTSS (R8), Z8
	VFMADD231PS  Z8, Z0, Z15
	ADDQ         $4, R8
	DECQ         CX
	JNZ          q5group

	VMOVAPS Z15, Z0
	HSUM512
	VZEROUPPER
	MOVSS   X0, ret+40(FP)
	RET

// func dotQ4AVX512(x *float32, q *byte, scale *float32, groups, group int) float32
TEXT ·dotQ4AVX512(SB), NOSPLIT, $0-44
	MOVQ         x+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         scale+16(FP), R8
	MOVQ         groups+24(FP), CX
	MOVQ         group+32(FP), DX
	VXORPS       Z15, Z15, Z15
	MOVL         $15, AX
	VPBROADCASTD AX, Z14
	MOVL         $8, AX
	VPBROADCASTD AX, Z13

q45group:
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	MOVQ   DX, BX

q45inner:
	VPMOVZXBD   (DI), Z4
	VPSRLD      $4, Z4, Z5
	VPANDD      Z14, Z4, Z4
	VPSUBD      Z13, Z4, Z4
	VPSUBD      Z13, Z5, Z5
	VCVTDQ2PS   Z4, Z4
	VCVTDQ2PS   Z5, Z5
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	ADDQ        $16, DI
	ADDQ        $128, SI
	SUBQ        $32, BX
	JNZ         q45inner

	VADDPS       Z1, Z0, Z0
	VBROADCASTSS (R8), Z8
	VFMADD231PS  Z8, Z0, Z15
	ADDQ         $4, R8
	DECQ         CX
	JNZ          q45group

	VMOVAPS Z15, Z0
	HSUM512
	VZEROUPPER
	MOVSS   X0, ret+40(FP)
	RET

// One E4M3 byte per dword lane of R -> f32 (see F8DECODE in kern_amd64.s).
#define F8DECODE512(R, T) \
	VPSLLD  $24, R, T   \
	VPSLLD  $25, R, R   \
	VPANDD  Z12, T, T   \
	VPSRLD  $5, R, R    \
	VMULPS  Z11, R, R   \
	VPORD   T, R, R

// func dotF8AVX512(x *float32, q *byte, scale *float32, groups, group int) float32
TEXT ·dotF8AVX512(SB), NOSPLIT, $0-44
	MOVQ         x+0(FP), SI
	MOVQ         q+8(FP), DI
	MOVQ         scale+16(FP), R8
	MOVQ         groups+24(FP), CX
	MOVQ         group+32(FP), DX
	VXORPS       Z15, Z15, Z15
	MOVL         $0x80000000, AX
	VPBROADCASTD AX, Z12
	MOVL         $0x7b800000, AX
	VPBROADCASTD AX, Z11

f85group:
	VXORPS Z0, Z0, Z0
	VXORPS Z1, Z1, Z1
	MOVQ   DX, BX

f85inner:
	VPMOVZXBD   (DI), Z4
	VPMOVZXBD   16(DI), Z5
	F8DECODE512(Z4, Z8)
	F8DECODE512(Z5, Z9)
	VFMADD231PS (SI), Z4, Z0
	VFMADD231PS 64(SI), Z5, Z1
	ADDQ        $32, DI
	ADDQ        $128, SI
	SUBQ        $32, BX
	JNZ         f85inner

	VADDPS       Z1, Z0, Z0
	VBROADCASTSS (R8), Z8
	VFMADD231PS  Z8, Z0, Z15
	ADDQ         $4, R8
	DECQ         CX
	JNZ          f85group

	VMOVAPS Z15, Z0
	HSUM512
	VZEROUPPER
	MOVSS   X0, ret+40(FP)
	RET
