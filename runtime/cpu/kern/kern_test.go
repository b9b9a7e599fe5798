package kern

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// Each fast kernel must equal its portable version on random inputs, odd
// lengths included, up to f32 rounding of a different summation order:
// |fast − ref| ≤ 4·n·2⁻²⁴·Σ|terms| (a standard bound for recursive sums is
// n·u·Σ|terms|; the factor 4 covers the extra scale multiplications). Both
// are also checked against an f64 sum of the same terms.

var lengths = []int{1, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 100, 255, 256, 1000, 1024, 3072}

func randF32(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// levels lists the instruction-set settings this CPU can run, fastest first;
// the last is the portable Go.
func levels() [][2]bool {
	var l [][2]bool
	if useAVX512 {
		l = append(l, [2]bool{true, true})
	}
	if useAVX2 {
		l = append(l, [2]bool{true, false})
	}
	return append(l, [2]bool{false, false})
}

// setLevel switches the kernels and returns a function restoring them.
func setLevel(l [2]bool) func() {
	a, b := useAVX2, useAVX512
	useAVX2, useAVX512 = l[0], l[1]
	return func() { useAVX2, useAVX512 = a, b }
}

// both runs f with each fast level and with the portable kernels, calling
// check on each fast result.
func both(t *testing.T, f func() float32, check func(fast, slow float32)) {
	t.Helper()
	ls := levels()
	restore := setLevel(ls[len(ls)-1])
	slow := f()
	restore()
	for _, l := range ls[:len(ls)-1] {
		restore := setLevel(l)
		fast := f()
		restore()
		check(fast, slow)
	}
	if len(ls) == 1 {
		check(slow, slow)
	}
}

func check(t *testing.T, name string, n int, fast, slow float32, ref, abs float64) {
	t.Helper()
	tol := 4 * float64(n+8) * 0x1p-24 * abs
	for _, c := range []struct {
		what string
		v    float64
		want float64
	}{{"fast vs portable", float64(fast), float64(slow)}, {"fast vs f64", float64(fast), ref}, {"portable vs f64", float64(slow), ref}} {
		if d := math.Abs(c.v - c.want); !(d <= tol) {
			t.Errorf("%s n=%d: %s: %g vs %g (diff %g > tol %g)", name, n, c.what, c.v, c.want, d, tol)
		}
	}
}

func TestDot(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range lengths {
		a, b := randF32(r, n), randF32(r, n+5) // b longer than a is allowed
		h := make([]uint16, n)
		for i := range h {
			h[i] = uint16(math.Float32bits(b[i]) >> 16)
		}
		var ref, abs, refh, absh float64
		for i := range a {
			p := float64(a[i]) * float64(b[i])
			ref, abs = ref+p, abs+math.Abs(p)
			ph := float64(a[i]) * float64(BF16(h[i]))
			refh, absh = refh+ph, absh+math.Abs(ph)
		}
		both(t, func() float32 { return Dot(a, b) }, func(fast, slow float32) { check(t, "Dot", n, fast, slow, ref, abs) })
		both(t, func() float32 { return DotBF16(a, h) }, func(fast, slow float32) { check(t, "DotBF16", n, fast, slow, refh, absh) })
		// bf16 weights must give exactly the result of their f32 upcast
		// (the backend promises it), at every level.
		wide := make([]float32, n)
		DecodeBF16(wide, h)
		for _, l := range levels() {
			restore := setLevel(l)
			d1, d2 := DotBF16(a, h), Dot(a, wide)
			restore()
			if d1 != d2 {
				t.Errorf("n=%d level %v: DotBF16 %g != Dot of the upcast %g", n, l, d1, d2)
			}
		}
	}
}

// quantRow makes a random quantized row of K weights in each format.
type quantRow struct {
	q8    []int8
	q4    []byte
	f8    []byte
	scale []float32
}

func randQuant(r *rand.Rand, K, group int) quantRow {
	q := quantRow{q8: make([]int8, K), q4: make([]byte, K/2), f8: make([]byte, K), scale: make([]float32, K/group)}
	for i := range q.q8 {
		q.q8[i] = int8(r.IntN(255) - 127)
		q.f8[i] = byte(r.IntN(256))
		if q.f8[i]&0x78 == 0 || q.f8[i]&0x7f == 0x7f { // subnormal or NaN: not emitted by the compiler
			q.f8[i] = 0
		}
	}
	for i := range q.q4 {
		q.q4[i] = byte(r.IntN(256))
	}
	for i := range q.scale {
		q.scale[i] = float32(r.Float64()*0.1 + 0.001)
	}
	return q
}

func TestQuantDots(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, group := range []int{32, 64, 128} {
		for _, K := range []int{group, 2 * group, 3 * group, 1024 / group * group, 3072} {
			if K%group != 0 {
				continue
			}
			x := randF32(r, K)
			q := randQuant(r, K, group)
			w8, w4, wf := make([]float32, K), make([]float32, K), make([]float32, K)
			DequantQ8(w8, q.q8, q.scale, group)
			DequantQ4(w4, q.q4, q.scale, group)
			DequantF8(wf, q.f8, q.scale, group)
			for _, c := range []struct {
				name string
				w    []float32
				dot  func() float32
			}{
				{"DotQ8", w8, func() float32 { return DotQ8(x, q.q8, q.scale, group) }},
				{"DotQ4", w4, func() float32 { return DotQ4(x, q.q4, q.scale, group) }},
				{"DotF8", wf, func() float32 { return DotF8(x, q.f8, q.scale, group) }},
			} {
				var ref, abs float64
				for i := range x {
					p := float64(x[i]) * float64(c.w[i])
					ref, abs = ref+p, abs+math.Abs(p)
				}
				both(t, c.dot, func(fast, slow float32) { check(t, fmt.Sprintf("%s/g%d", c.name, group), K, fast, slow, ref, abs) })
			}
		}
	}
}

// The dequantizers are exact (one rounding, s·q), so fast and portable
// versions agree bit for bit.
func TestDequant(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, group := range []int{32, 64, 128} {
		K := 3 * 128
		q := randQuant(r, K, group)
		for _, c := range []struct {
			name string
			f    func(dst []float32)
		}{
			{"DequantQ8", func(d []float32) { DequantQ8(d, q.q8, q.scale, group) }},
			{"DequantQ4", func(d []float32) { DequantQ4(d, q.q4, q.scale, group) }},
			{"DequantF8", func(d []float32) { DequantF8(d, q.f8, q.scale, group) }},
		} {
			fast, slow := make([]float32, K), make([]float32, K)
			saved := useAVX2
			c.f(fast)
			useAVX2 = false
			c.f(slow)
			useAVX2 = saved
			for i := range fast {
				if math.Float32bits(fast[i]) != math.Float32bits(slow[i]) {
					t.Fatalf("%s/g%d [%d]: fast %g, portable %g", c.name, group, i, fast[i], slow[i])
				}
			}
		}
	}
}

func TestF8Decode(t *testing.T) {
	// Every normal E4M3 code against its definition 2^(e-7)·(1+m/8).
	for b := 0; b < 256; b++ {
		e, m := (b>>3)&15, b&7
		if e == 0 || b&0x7f == 0x7f {
			continue
		}
		want := math.Ldexp(1+float64(m)/8, e-7)
		if b&0x80 != 0 {
			want = -want
		}
		if got := F8(byte(b)); float64(got) != want {
			t.Errorf("F8(%#x) = %g, want %g", b, got, want)
		}
	}
	if F8(0) != 0 || F8(0x80) != 0 {
		t.Errorf("F8 of ±0 is not 0")
	}
}

func TestGemm2x4(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, K := range lengths {
		ldx, ldw := K+3, K+1
		x, w := randF32(r, 2*ldx), randF32(r, 4*ldw)
		var fastOut, slowOut [8]float32
		saved := useAVX2
		Gemm2x4(x, ldx, w, ldw, K, &fastOut)
		useAVX2 = false
		Gemm2x4(x, ldx, w, ldw, K, &slowOut)
		useAVX2 = saved
		for i := 0; i < 2; i++ {
			for j := 0; j < 4; j++ {
				var ref, abs float64
				for k := 0; k < K; k++ {
					p := float64(x[i*ldx+k]) * float64(w[j*ldw+k])
					ref, abs = ref+p, abs+math.Abs(p)
				}
				check(t, fmt.Sprintf("Gemm2x4[%d,%d]", i, j), K, fastOut[4*i+j], slowOut[4*i+j], ref, abs)
			}
		}
	}
}

func TestDecodeBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range lengths {
		src := make([]uint16, n)
		for i := range src {
			src[i] = uint16(r.Uint32())
		}
		dst := make([]float32, n)
		DecodeBF16(dst, src)
		for i, h := range src {
			if math.Float32bits(dst[i]) != uint32(h)<<16 {
				t.Fatalf("n=%d: DecodeBF16[%d] = %#x, want %#x", n, i, math.Float32bits(dst[i]), uint32(h)<<16)
			}
		}
	}
}

func TestNoAllocs(t *testing.T) {
	x := make([]float32, 1024)
	q := make([]int8, 1024)
	s := make([]float32, 32)
	if n := testing.AllocsPerRun(10, func() { DotQ8(x, q, s, 32); Dot(x, x) }); n != 0 {
		t.Errorf("kernels allocate %v times per call", n)
	}
}

func benchDot(b *testing.B, K int, f func()) {
	b.SetBytes(int64(K))
	for b.Loop() {
		f()
	}
}

// BenchmarkDot reports weight bytes/s of one row (K = 1024) in each format;
// compare the -avx2 and -generic variants in the same run for the speed-up.
func BenchmarkDot(b *testing.B) {
	const K, G = 1024, 32
	r := rand.New(rand.NewPCG(9, 9))
	x, w := randF32(r, K), randF32(r, K)
	h := make([]uint16, K)
	q := randQuant(r, K, G)
	var sink float32
	for _, l := range levels() {
		suffix := map[[2]bool]string{{true, true}: "-avx512", {true, false}: "-avx2", {false, false}: "-generic"}[l]
		restore := setLevel(l)
		b.Run("f32"+suffix, func(b *testing.B) { benchDot(b, 4*K, func() { sink += Dot(x, w) }) })
		b.Run("bf16"+suffix, func(b *testing.B) { benchDot(b, 2*K, func() { sink += DotBF16(x, h) }) })
		b.Run("int8"+suffix, func(b *testing.B) { benchDot(b, K, func() { sink += DotQ8(x, q.q8, q.scale, G) }) })
		b.Run("int4"+suffix, func(b *testing.B) { benchDot(b, K/2, func() { sink += DotQ4(x, q.q4, q.scale, G) }) })
		b.Run("fp8"+suffix, func(b *testing.B) { benchDot(b, K, func() { sink += DotF8(x, q.f8, q.scale, G) }) })
		restore()
	}
	_ = sink
}

// PIO_CPU caps the level by name; an unknown name, or one above the CPU's
// level, is refused and leaves the detected level.
func TestLevelFromEnv(t *testing.T) {
	for _, c := range []struct {
		v      string
		det    Level
		want   Level
		errSub string
	}{
		{"", AVX512, AVX512, ""},
		{"generic", AVX512, Generic, ""},
		{"AVX2", AVX512, AVX2, ""},
		{" avx512 ", AVX512, AVX512, ""},
		{"avx2", AVX2, AVX2, ""},
		{"avx512", AVX2, AVX2, "runs kernels up to avx2"},
		{"avx2", Generic, Generic, "runs kernels up to generic"},
		{"neon", AVX512, AVX512, "not a kernel level"},
	} {
		got, err := levelFromEnv(c.v, c.det)
		if got != c.want {
			t.Errorf("levelFromEnv(%q, %v) = %v, want %v", c.v, c.det, got, c.want)
		}
		switch {
		case c.errSub == "" && err != nil:
			t.Errorf("levelFromEnv(%q, %v): unexpected error %v", c.v, c.det, err)
		case c.errSub != "" && (err == nil || !strings.Contains(err.Error(), c.errSub)):
			t.Errorf("levelFromEnv(%q, %v): error %v, want one containing %q", c.v, c.det, err, c.errSub)
		}
	}
}

// The active level is what PIO_CPU (or the CPU) says, and the switches the
// kernels read follow it.
func TestActiveLevel(t *testing.T) {
	t.Logf("kernels: %s", Features())
	if Active() > Detected() {
		t.Fatalf("active level %v above the detected %v", Active(), Detected())
	}
	if useAVX2 != (Active() >= AVX2) || useAVX512 != (Active() >= AVX512) {
		t.Fatalf("level %v but useAVX2=%v useAVX512=%v", Active(), useAVX2, useAVX512)
	}
}
