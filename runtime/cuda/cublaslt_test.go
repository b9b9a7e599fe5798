package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/inference-pio/pio/internal/golden"
)

// fakeLt is the emulated cuBLASLt (testdata/emu/fakecublaslt.cc), built
// and loaded once per process.
var fakeLt struct {
	once sync.Once
	lt   *cublasLt
	err  error
}

// useFakeCublasLt returns the emulated cuBLASLt; it works on the emulated
// driver's memory (useFakeDriver), which is host memory.
func useFakeCublasLt(t *testing.T, gxx string) *cublasLt {
	t.Helper()
	fakeLt.once.Do(func() {
		dir, err := os.MkdirTemp("", "pio-fakecublaslt-")
		if err != nil {
			fakeLt.err = err
			return
		}
		defer os.RemoveAll(dir)
		so := filepath.Join(dir, "fakecublaslt.so")
		if out, err := exec.Command(gxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-o", so, "testdata/emu/fakecublaslt.cc").CombinedOutput(); err != nil {
			fakeLt.err = fmt.Errorf("g++ fakecublaslt: %v\n%s", err, out)
			return
		}
		lib, err := purego.Dlopen(so, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			fakeLt.err = err
			return
		}
		fakeLt.lt, fakeLt.err = bindCublasLt(lib)
	})
	if fakeLt.err != nil {
		t.Fatal(fakeLt.err)
	}
	return fakeLt.lt
}

// bf16Round rounds to bfloat16 (nearest even) and back.
func bf16Round(v float32) float32 {
	return math.Float32frombits(uint32(bf16Bits(v)) << 16)
}

func bf16Bits(v float32) uint16 {
	b := math.Float32bits(v)
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// testValues returns n values in [-1, 1) that are exact in bf16.
func testValues(n int, seed uint32) []float32 {
	out := make([]float32, n)
	s := seed*2654435761 + 1
	for i := range out {
		s ^= s << 13
		s ^= s >> 17
		s ^= s << 5
		out[i] = bf16Round(float32(s>>8)/float32(1<<23) - 1)
	}
	return out
}

func bf16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		h := bf16Bits(x)
		b[2*i], b[2*i+1] = byte(h), byte(h>>8)
	}
	return b
}

// refGemm is Y[M,N] = X[M,K]·W[N,K]ᵀ in float64.
func refGemm(x, w []float32, m, n, k int) []float32 {
	y := make([]float32, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var acc float64
			for l := 0; l < k; l++ {
				acc += float64(x[i*k+l]) * float64(w[j*k+l])
			}
			y[i*n+j] = float32(acc)
		}
	}
	return y
}

// ltRun runs one GEMM through cuBLASLt on device memory of the (emulated)
// driver and returns Y, or the error of planning or running it.
func ltRun(t *testing.T, d *driver, lt *cublasLt, x, w []float32, m, n, k int, ops [2]int32) ([]float32, error) {
	t.Helper()
	up := func(b []byte) uint64 {
		var p uint64
		if err := d.check(d.cuMemAlloc(&p, uint64(len(b))), "cuMemAlloc"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.cuMemFree(p) })
		if err := d.check(d.cuMemcpyHtoD(p, unsafe.Pointer(&b[0]), uint64(len(b))), "upload"); err != nil {
			t.Fatal(err)
		}
		return p
	}
	xd, wd, yd := up(bf16Bytes(x)), up(bf16Bytes(w)), up(make([]byte, 4*m*n))
	var h uintptr
	if err := ltCheck(lt.create(&h), "cublasLtCreate"); err != nil {
		t.Fatal(err)
	}
	defer lt.destroy(h)
	g, err := lt.newGemm(h, m, n, k, ops, 0, 0)
	if err != nil {
		return nil, err
	}
	defer g.close()
	if err := g.run(xd, wd, yd, 0); err != nil {
		return nil, err
	}
	y := make([]float32, m*n)
	if err := d.check(d.cuMemcpyDtoH(unsafe.Pointer(&y[0]), yd, uint64(4*m*n)), "download"); err != nil {
		t.Fatal(err)
	}
	return y, nil
}

// TestEmulatedCublasLtGemm runs the cuBLASLt GEMM wrapper through the
// emulated library (real column-major and transpose semantics) and checks
// Y = X·Wᵀ of bf16 inputs against a plain Go matmul (1e-5: f32 sums of
// exact bf16 products in another order), on square and non-square shapes.
// Swapping the transpose flags must be caught: rejected when the shapes
// disagree, wrong values when they happen to agree (square).
func TestEmulatedCublasLtGemm(t *testing.T) {
	gxx := useFakeDriver(t)
	lt := useFakeCublasLt(t, gxx)
	d, err := loadDriver()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ m, n, k int }{{1, 16, 8}, {3, 5, 7}, {17, 9, 33}, {6, 6, 6}, {64, 40, 24}} {
		t.Run(fmt.Sprintf("M%d_N%d_K%d", c.m, c.n, c.k), func(t *testing.T) {
			x, w := testValues(c.m*c.k, uint32(c.m)), testValues(c.n*c.k, uint32(c.n+100))
			want := refGemm(x, w, c.m, c.n, c.k)
			got, err := ltRun(t, d, lt, x, w, c.m, c.n, c.k, [2]int32{ltOpT, ltOpN})
			if err != nil {
				t.Fatal(err)
			}
			if e := golden.RelErr(got, want); e > 1e-5 {
				t.Errorf("relative error %.3g vs Go matmul", e)
			}
			swapped, err := ltRun(t, d, lt, x, w, c.m, c.n, c.k, [2]int32{ltOpN, ltOpT})
			switch {
			case c.m == c.n && c.n == c.k:
				if err != nil {
					t.Fatalf("swapped flags, square: %v", err)
				}
				if e := golden.RelErr(swapped, want); e < 1e-2 {
					t.Errorf("swapped transpose flags gave the right product (relative error %.3g)", e)
				}
			case err == nil:
				t.Errorf("swapped transpose flags on a non-square problem were accepted")
			case !strings.Contains(err.Error(), "INVALID_VALUE"):
				t.Errorf("swapped flags: %v, want CUBLAS_STATUS_INVALID_VALUE", err)
			}
		})
	}
}

// TestCublasLtMissing: a library that is not there is a clear error
// naming where it looked and how to provide one.
func TestCublasLtMissing(t *testing.T) {
	t.Setenv("PIO_CUBLASLT", "/nonexistent/libcublasLt.so.13")
	c := cublasLtCandidates()
	if len(c) != 1 || c[0] != "/nonexistent/libcublasLt.so.13" {
		t.Fatalf("candidates with $PIO_CUBLASLT set: %v", c)
	}
	_, err := openCublasLt(c)
	if !errors.Is(err, ErrNoCublasLt) || !strings.Contains(err.Error(), "/nonexistent/libcublasLt.so.13") || !strings.Contains(err.Error(), "PIO_CUBLASLT") {
		t.Errorf("error %v: want ErrNoCublasLt naming the path and $PIO_CUBLASLT", err)
	}
	t.Setenv("PIO_CUBLASLT", "")
	if c := cublasLtCandidates(); len(c) < 3 || c[0] != "libcublasLt.so.13" || c[1] != "libcublasLt.so.12" {
		t.Errorf("default candidates %v: want the sonames first", c)
	}
}
