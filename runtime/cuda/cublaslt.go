package cuda

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// cuBLASLt is the vendor GEMM that the generated matmul kernels are
// measured against (gemm_bench_test.go, make gpu-check). Like libcuda it is
// loaded at run time with purego, so nothing links against it and a
// machine without it only loses the baseline. The backend itself does not
// call it: docs/design.md says why the GEMMs are generated.
//
// Only one configuration is bound: Y[M,N] = X[M,K]·W[N,K]ᵀ with X and W
// bf16, Y f32, f32 accumulation, all three row-major (the layout of a plan's
// activations and weights).

// ltStatus is a cublasStatus_t.
type ltStatus int32

// ltStatusNames are cublas_api.h's cublasStatus_t values.
var ltStatusNames = map[ltStatus]string{
	0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

func (s ltStatus) String() string {
	if n, ok := ltStatusNames[s]; ok {
		return fmt.Sprintf("%s (%d)", n, int32(s))
	}
	return fmt.Sprintf("cublasStatus_t %d", int32(s))
}

// Enum values, from library_types.h (cudaDataType), cublas_api.h
// (cublasComputeType_t, cublasOperation_t) and cublasLt.h (attributes).
const (
	ltR32F      = 0  // CUDA_R_32F
	ltR16BF     = 14 // CUDA_R_16BF
	ltCompute32 = 68 // CUBLAS_COMPUTE_32F
	ltOpN       = 0  // CUBLAS_OP_N
	ltOpT       = 1  // CUBLAS_OP_T

	ltDescTransA          = 3 // CUBLASLT_MATMUL_DESC_TRANSA, int32
	ltDescTransB          = 4 // CUBLASLT_MATMUL_DESC_TRANSB, int32
	ltPrefMaxWorkspaceLen = 1 // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64
)

// ltAlgo is cublasLtMatmulAlgo_t (opaque, 64 bytes).
type ltAlgo struct{ data [8]uint64 }

// ltHeuristic is cublasLtMatmulHeuristicResult_t (96 bytes).
type ltHeuristic struct {
	algo          ltAlgo
	workspaceSize uint64
	state         ltStatus
	wavesCount    float32
	reserved      [4]int32
}

// cublasLt holds the cuBLASLt functions the GEMM uses.
type cublasLt struct {
	create           func(h *uintptr) ltStatus
	destroy          func(h uintptr) ltStatus
	descCreate       func(desc *uintptr, compute, scale int32) ltStatus
	descSetAttribute func(desc uintptr, attr int32, buf unsafe.Pointer, size uint64) ltStatus
	descDestroy      func(desc uintptr) ltStatus
	layoutCreate     func(l *uintptr, typ int32, rows, cols uint64, ld int64) ltStatus
	layoutDestroy    func(l uintptr) ltStatus
	prefCreate       func(p *uintptr) ltStatus
	prefSetAttribute func(p uintptr, attr int32, buf unsafe.Pointer, size uint64) ltStatus
	prefDestroy      func(p uintptr) ltStatus
	algoGetHeuristic func(h, desc, a, b, c, d, pref uintptr, requested int32, results *ltHeuristic, count *int32) ltStatus
	matmul           func(h, desc uintptr, alpha unsafe.Pointer, a uint64, adesc uintptr, b uint64, bdesc uintptr,
		beta unsafe.Pointer, c uint64, cdesc uintptr, d uint64, ddesc uintptr, algo *ltAlgo, workspace, workspaceSize uint64, stream uintptr) ltStatus

	path string // where the library was loaded from
}

var ltSymbols = []symbol[cublasLt]{
	{"cublasLtCreate", func(l *cublasLt) any { return &l.create }},
	{"cublasLtDestroy", func(l *cublasLt) any { return &l.destroy }},
	{"cublasLtMatmulDescCreate", func(l *cublasLt) any { return &l.descCreate }},
	{"cublasLtMatmulDescSetAttribute", func(l *cublasLt) any { return &l.descSetAttribute }},
	{"cublasLtMatmulDescDestroy", func(l *cublasLt) any { return &l.descDestroy }},
	{"cublasLtMatrixLayoutCreate", func(l *cublasLt) any { return &l.layoutCreate }},
	{"cublasLtMatrixLayoutDestroy", func(l *cublasLt) any { return &l.layoutDestroy }},
	{"cublasLtMatmulPreferenceCreate", func(l *cublasLt) any { return &l.prefCreate }},
	{"cublasLtMatmulPreferenceSetAttribute", func(l *cublasLt) any { return &l.prefSetAttribute }},
	{"cublasLtMatmulPreferenceDestroy", func(l *cublasLt) any { return &l.prefDestroy }},
	{"cublasLtMatmulAlgoGetHeuristic", func(l *cublasLt) any { return &l.algoGetHeuristic }},
	{"cublasLtMatmul", func(l *cublasLt) any { return &l.matmul }},
}

// ErrNoCublasLt is returned (wrapped) when libcublasLt cannot be loaded.
var ErrNoCublasLt = errors.New("cuBLASLt not available")

var (
	ltOnce   sync.Once
	ltLoaded *cublasLt
	ltErr    error
)

// loadCublasLt opens libcublasLt once per process: see cublasLtCandidates.
func loadCublasLt() (*cublasLt, error) {
	ltOnce.Do(func() { ltLoaded, ltErr = openCublasLt(cublasLtCandidates()) })
	return ltLoaded, ltErr
}

// cublasLtCandidates lists where libcublasLt is looked for, in order:
// $PIO_CUBLASLT alone if set; else the sonames of CUDA 13 and 12 and the
// bare name (the loader's search: LD_LIBRARY_PATH, ld.so.cache),
// /usr/local/cuda/lib64, and the pip wheels nvidia-cublas (CUDA 13:
// nvidia/cu13/lib) and nvidia-cublas-cu12 (nvidia/cublas/lib) in
// $VIRTUAL_ENV, the system and user site-packages, and python3's sys.path.
func cublasLtCandidates() []string {
	if p := os.Getenv("PIO_CUBLASLT"); p != "" {
		return []string{p}
	}
	c := []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"}
	glob := func(pattern string) {
		m, _ := filepath.Glob(pattern)
		for i := len(m) - 1; i >= 0; i-- { // .so.13 before .so.12
			c = append(c, m[i])
		}
	}
	glob("/usr/local/cuda/lib64/libcublasLt.so.*")
	var sites []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		sites = append(sites, filepath.Join(v, "lib", "python3*", "site-packages"))
	}
	sites = append(sites, "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
		"/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages")
	if home, err := os.UserHomeDir(); err == nil {
		sites = append(sites, filepath.Join(home, ".local", "lib", "python3*", "site-packages"))
	}
	sites = append(sites, pythonPath()...)
	seen := map[string]bool{}
	for _, s := range sites {
		if seen[s] {
			continue
		}
		seen[s] = true
		glob(filepath.Join(s, "nvidia", "cu13", "lib", "libcublasLt.so.*"))
		glob(filepath.Join(s, "nvidia", "cublas", "lib", "libcublasLt.so.*"))
	}
	return c
}

// pythonPath is python3's sys.path, if python3 is on PATH (it finds conda
// and other interpreters' site-packages the fixed list misses).
func pythonPath() []string {
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil
	}
	out, err := exec.Command(py, "-c", "import sys; print('\\n'.join(p for p in sys.path if p))").Output()
	if err != nil {
		return nil
	}
	return strings.Fields(string(out))
}

// openCublasLt loads the first candidate that opens and binds.
func openCublasLt(candidates []string) (*cublasLt, error) {
	var errs []string
	for _, p := range candidates {
		lib, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		l, err := bindCublasLt(lib)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		l.path = p
		return l, nil
	}
	if len(errs) > 4 {
		errs = append(errs[:4], fmt.Sprintf("and %d more", len(errs)-4))
	}
	return nil, fmt.Errorf("%w: set $PIO_CUBLASLT to libcublasLt.so or pip install nvidia-cublas (tried %d places: %s)",
		ErrNoCublasLt, len(candidates), strings.Join(errs, "; "))
}

// bindCublasLt resolves every symbol of ltSymbols in lib, reporting all the
// missing ones at once.
func bindCublasLt(lib uintptr) (*cublasLt, error) {
	l := &cublasLt{}
	if missing := bindSymbols(l, lib, ltSymbols); len(missing) > 0 {
		return nil, fmt.Errorf("%w: the library lacks %v (cuBLAS 11 or older?)", ErrNoCublasLt, missing)
	}
	return l, nil
}

func ltCheck(s ltStatus, what string) error {
	if s == 0 {
		return nil
	}
	return fmt.Errorf("cublasLt: %s: %v", what, s)
}

// ltGemm is one planned cuBLASLt GEMM of fixed M, N, K. cuBLASLt is
// column-major, so the row-major product is computed transposed:
// Yᵀ[N,M] = W·Xᵀ, with A = W (stored K×N column-major, ld K, TRANSA = T),
// B = X (stored K×M column-major, ld K, TRANSB = N) and C = D = Y (N×M
// column-major, ld N).
type ltGemm struct {
	lt                  *cublasLt
	h                   uintptr
	desc, a, b, c, pref uintptr
	algo                ltHeuristic
	ws, wsSize          uint64
	alpha, beta         float32
	m, n, k             int
}

// newGemm plans Y[M,N] = X[M,K]·W[N,K]ᵀ on handle h with a workspace of
// wsSize bytes at ws (a device pointer). ops are TRANSA and TRANSB; only
// {ltOpT, ltOpN} is the product above (tests pass others to check that a
// wrong layout is caught).
func (lt *cublasLt) newGemm(h uintptr, m, n, k int, ops [2]int32, ws, wsSize uint64) (_ *ltGemm, err error) {
	const maxDim = 1<<31 - 1
	if m <= 0 || n <= 0 || k <= 0 || m > maxDim || n > maxDim || k > maxDim {
		return nil, fmt.Errorf("cublasLt: GEMM M=%d N=%d K=%d: dimensions must be in 1..%d", m, n, k, maxDim)
	}
	g := &ltGemm{lt: lt, h: h, ws: ws, wsSize: wsSize, alpha: 1, m: m, n: n, k: k}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if err := ltCheck(lt.descCreate(&g.desc, ltCompute32, ltR32F), "cublasLtMatmulDescCreate"); err != nil {
		return nil, err
	}
	for i, attr := range []int32{ltDescTransA, ltDescTransB} {
		op := ops[i]
		if err := ltCheck(lt.descSetAttribute(g.desc, attr, unsafe.Pointer(&op), 4), "cublasLtMatmulDescSetAttribute"); err != nil {
			return nil, err
		}
	}
	M, N, K := uint64(m), uint64(n), uint64(k)
	if err := ltCheck(lt.layoutCreate(&g.a, ltR16BF, K, N, int64(k)), "cublasLtMatrixLayoutCreate A"); err != nil {
		return nil, err
	}
	if err := ltCheck(lt.layoutCreate(&g.b, ltR16BF, K, M, int64(k)), "cublasLtMatrixLayoutCreate B"); err != nil {
		return nil, err
	}
	if err := ltCheck(lt.layoutCreate(&g.c, ltR32F, N, M, int64(n)), "cublasLtMatrixLayoutCreate C"); err != nil {
		return nil, err
	}
	if err := ltCheck(lt.prefCreate(&g.pref), "cublasLtMatmulPreferenceCreate"); err != nil {
		return nil, err
	}
	if err := ltCheck(lt.prefSetAttribute(g.pref, ltPrefMaxWorkspaceLen, unsafe.Pointer(&g.wsSize), 8), "cublasLtMatmulPreferenceSetAttribute"); err != nil {
		return nil, err
	}
	var count int32
	if err := ltCheck(lt.algoGetHeuristic(h, g.desc, g.a, g.b, g.c, g.c, g.pref, 1, &g.algo, &count), "cublasLtMatmulAlgoGetHeuristic"); err != nil {
		return nil, fmt.Errorf("GEMM M=%d N=%d K=%d: %w", m, n, k, err)
	}
	if count < 1 || g.algo.state != 0 {
		return nil, fmt.Errorf("cublasLt: GEMM M=%d N=%d K=%d: no algorithm (%d results, state %v)", m, n, k, count, g.algo.state)
	}
	if g.algo.workspaceSize > wsSize {
		return nil, fmt.Errorf("cublasLt: GEMM M=%d N=%d K=%d: algorithm wants %d bytes of workspace, %d given", m, n, k, g.algo.workspaceSize, wsSize)
	}
	return g, nil
}

// run enqueues the GEMM on stream: x bf16 [M,K], w bf16 [N,K], y f32
// [M,N], device pointers.
func (g *ltGemm) run(x, w, y uint64, stream uintptr) error {
	lt := g.lt
	return ltCheck(lt.matmul(g.h, g.desc, unsafe.Pointer(&g.alpha), w, g.a, x, g.b, unsafe.Pointer(&g.beta), y, g.c, y, g.c,
		&g.algo.algo, g.ws, g.wsSize, stream), fmt.Sprintf("cublasLtMatmul M=%d N=%d K=%d", g.m, g.n, g.k))
}

// close destroys the descriptors (not the handle).
func (g *ltGemm) close() {
	lt := g.lt
	for _, l := range []uintptr{g.a, g.b, g.c} {
		if l != 0 {
			lt.layoutDestroy(l)
		}
	}
	if g.pref != 0 {
		lt.prefDestroy(g.pref)
	}
	if g.desc != 0 {
		lt.descDestroy(g.desc)
	}
	g.a, g.b, g.c, g.pref, g.desc = 0, 0, 0, 0, 0
}
