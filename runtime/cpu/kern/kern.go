package kern

import "math"

// QBlock is the number of weights in an int4 packing block; every group size
// must be a multiple of it.
const QBlock = 32

// Dot returns Σ a[i]·b[i] over len(a); b must be at least as long.
func Dot(a, b []float32) float32 {
	n := len(a)
	b = b[:n]
	if !useAVX2 {
		return dotGo(a, b)
	}
	s := float32(0)
	head := n &^ 7
	if useAVX512 {
		head = n &^ 15
		if head > 0 {
			s = dotF32AVX512(&a[0], &b[0], head)
		}
	} else if head > 0 {
		s = dotF32AVX2(&a[0], &b[0], head)
	}
	for i := head; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// DotBF16 returns Σ a[i]·bf16(b[i]) over len(a), b in bfloat16 bits.
func DotBF16(a []float32, b []uint16) float32 {
	n := len(a)
	b = b[:n]
	if !useAVX2 {
		return dotBF16Go(a, b)
	}
	s := float32(0)
	head := n &^ 7
	if useAVX512 {
		head = n &^ 15
		if head > 0 {
			s = dotBF16AVX512(&a[0], &b[0], head)
		}
	} else if head > 0 {
		s = dotBF16AVX2(&a[0], &b[0], head)
	}
	for i := head; i < n; i++ {
		s += a[i] * BF16(b[i])
	}
	return s
}

// DotQ8 returns Σ x[i]·scale[i/group]·q[i] over len(x), which must be a
// multiple of group (itself a multiple of QBlock).
func DotQ8(x []float32, q []int8, scale []float32, group int) float32 {
	groups := len(x) / group
	q, scale = q[:len(x)], scale[:groups]
	if useAVX512 && groups > 0 {
		return dotQ8AVX512(&x[0], &q[0], &scale[0], groups, group)
	}
	if useAVX2 && groups > 0 {
		return dotQ8AVX2(&x[0], &q[0], &scale[0], groups, group)
	}
	return dotQ8Go(x, q, scale, group)
}

// DotQ4 is DotQ8 for int4 weights packed as described in the package doc:
// q holds len(x)/2 bytes.
func DotQ4(x []float32, q []byte, scale []float32, group int) float32 {
	groups := len(x) / group
	q, scale = q[:len(x)/2], scale[:groups]
	if useAVX512 && groups > 0 {
		return dotQ4AVX512(&x[0], &q[0], &scale[0], groups, group)
	}
	if useAVX2 && groups > 0 {
		return dotQ4AVX2(&x[0], &q[0], &scale[0], groups, group)
	}
	return dotQ4Go(x, q, scale, group)
}

// DotF8 is DotQ8 for FP8 E4M3 codes (one byte per weight, no subnormals).
func DotF8(x []float32, q []byte, scale []float32, group int) float32 {
	groups := len(x) / group
	q, scale = q[:len(x)], scale[:groups]
	if useAVX512 && groups > 0 {
		return dotF8AVX512(&x[0], &q[0], &scale[0], groups, group)
	}
	if useAVX2 && groups > 0 {
		return dotF8AVX2(&x[0], &q[0], &scale[0], groups, group)
	}
	return dotF8Go(x, q, scale, group)
}

// Gemm2x4 computes out[4i+j] = Σ_k x[i·ldx+k]·w[j·ldw+k] for i < 2, j < 4,
// k < K: two rows of x against four rows of w, all read once.
func Gemm2x4(x []float32, ldx int, w []float32, ldw int, K int, out *[8]float32) {
	_ = x[ldx+K-1]
	_ = w[3*ldw+K-1]
	head := K &^ 7
	if useAVX2 && head > 0 {
		gemm2x4AVX2(&x[0], ldx, &w[0], ldw, head, out)
	} else {
		head = 0
		*out = [8]float32{}
	}
	for k := head; k < K; k++ {
		for i := 0; i < 2; i++ {
			xv := x[i*ldx+k]
			for j := 0; j < 4; j++ {
				out[4*i+j] += xv * w[j*ldw+k]
			}
		}
	}
}

// BF16 widens bfloat16 bits to f32 (exact).
func BF16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// DecodeBF16 widens bfloat16 bits to f32: dst[i] = bf16(src[i]).
func DecodeBF16(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	head := len(src) &^ 7
	if useAVX2 && head > 0 {
		decodeBF16AVX2(&dst[0], &src[0], head)
	} else {
		head = 0
	}
	for i := head; i < len(src); i++ {
		dst[i] = BF16(src[i])
	}
}

// DequantQ8 writes the f32 weights of an int8 row: dst[i] = scale[i/group]·q[i].
// Like all Dequant functions it needs a row length that is a multiple of group.
func DequantQ8(dst []float32, q []int8, scale []float32, group int) {
	if n := len(q); useAVX2 && n >= group {
		dequantQ8AVX2(&dst[:n][0], &q[0], &scale[:n/group][0], n/group, group)
		return
	}
	dst = dst[:len(q)]
	for g := 0; g*group < len(q); g++ {
		s := scale[g]
		d, qq := dst[g*group:(g+1)*group], q[g*group:(g+1)*group]
		for i, v := range qq {
			d[i] = s * float32(v)
		}
	}
}

// DequantQ4 writes the f32 weights of an int4 row of len(dst) weights.
func DequantQ4(dst []float32, q []byte, scale []float32, group int) {
	if n := len(dst); useAVX2 && n >= group {
		dequantQ4AVX2(&dst[:n][0], &q[:n/2][0], &scale[:n/group][0], n/group, group)
		return
	}
	for b := 0; b*QBlock < len(dst); b++ {
		s := scale[b*QBlock/group]
		d, qq := dst[b*QBlock:(b+1)*QBlock], q[b*QBlock/2:(b+1)*QBlock/2]
		for j, v := range qq {
			d[j] = s * float32(int(v&15)-8)
			d[j+16] = s * float32(int(v>>4)-8)
		}
	}
}

// DequantF8 writes the f32 weights of an fp8 row.
func DequantF8(dst []float32, q []byte, scale []float32, group int) {
	if n := len(q); useAVX2 && n >= group {
		dequantF8AVX2(&dst[:n][0], &q[0], &scale[:n/group][0], n/group, group)
		return
	}
	dst = dst[:len(q)]
	for g := 0; g*group < len(q); g++ {
		s := scale[g]
		d, qq := dst[g*group:(g+1)*group], q[g*group:(g+1)*group]
		for i, v := range qq {
			d[i] = s * F8(v)
		}
	}
}

// f8Mul is 2¹²⁰: an E4M3 byte's low 7 bits shifted into an f32's exponent
// and mantissa fields read 2¹²⁰ times too small.
const f8Mul = 1.329227995784916e+36

// F8 decodes an FP8 E4M3 byte (subnormal codes excluded, see the package doc).
func F8(b byte) float32 {
	v := math.Float32frombits(uint32(b&0x7f)<<20) * f8Mul
	if b&0x80 != 0 {
		v = -v
	}
	return v
}

func dotQ8Go(x []float32, q []int8, scale []float32, group int) float32 {
	var s float32
	for g := range scale {
		xs, qs := x[g*group:(g+1)*group], q[g*group:(g+1)*group]
		var a0, a1, a2, a3 float32
		for i := 0; i < len(xs); i += 4 {
			a0 += xs[i] * float32(qs[i])
			a1 += xs[i+1] * float32(qs[i+1])
			a2 += xs[i+2] * float32(qs[i+2])
			a3 += xs[i+3] * float32(qs[i+3])
		}
		s += scale[g] * ((a0 + a1) + (a2 + a3))
	}
	return s
}

func dotQ4Go(x []float32, q []byte, scale []float32, group int) float32 {
	var s float32
	for g := range scale {
		var a0, a1 float32
		for b := g * group / QBlock; b < (g+1)*group/QBlock; b++ {
			xs, qs := x[b*QBlock:(b+1)*QBlock], q[b*QBlock/2:(b+1)*QBlock/2]
			for j, v := range qs {
				a0 += xs[j] * float32(int(v&15)-8)
				a1 += xs[j+16] * float32(int(v>>4)-8)
			}
		}
		s += scale[g] * (a0 + a1)
	}
	return s
}

func dotF8Go(x []float32, q []byte, scale []float32, group int) float32 {
	var s float32
	for g := range scale {
		xs, qs := x[g*group:(g+1)*group], q[g*group:(g+1)*group]
		var a0, a1 float32
		for i := 0; i < len(xs); i += 2 {
			a0 += xs[i] * F8(qs[i])
			a1 += xs[i+1] * F8(qs[i+1])
		}
		s += scale[g] * (a0 + a1)
	}
	return s
}

// dotGo is Dot in portable Go: eight accumulators (element i goes to
// accumulator i%8), summed pairwise at the end.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * y[0]
		s1 += x[1] * y[1]
		s2 += x[2] * y[2]
		s3 += x[3] * y[3]
		s4 += x[4] * y[4]
		s5 += x[5] * y[5]
		s6 += x[6] * y[6]
		s7 += x[7] * y[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// dotBF16Go is dotGo with b in bfloat16 bits.
func dotBF16Go(a []float32, b []uint16) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		x, y := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += x[0] * BF16(y[0])
		s1 += x[1] * BF16(y[1])
		s2 += x[2] * BF16(y[2])
		s3 += x[3] * BF16(y[3])
		s4 += x[4] * BF16(y[4])
		s5 += x[5] * BF16(y[5])
		s6 += x[6] * BF16(y[6])
		s7 += x[7] * BF16(y[7])
	}
	for ; i < len(a); i++ {
		s0 += a[i] * BF16(b[i])
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}
