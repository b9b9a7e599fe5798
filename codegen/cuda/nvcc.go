package cuda

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"

	"github.com/inference-pio/pio/kernel/abi"
)

// DefaultArchs are the images every CUDA engine carries: cubins for Ampere
// (sm_80: A100), Ada (sm_89: L4, L40) and Hopper (sm_90a: H100, H200, with
// its arch-specific instructions), and compute_90 PTX that the driver
// compiles for any newer GPU (Blackwell and on). A cubin also runs on later
// minor revisions of its major (sm_80 on sm_86, sm_87).
var DefaultArchs = []string{"sm_80", "sm_89", "sm_90a", "compute_90"}

// ErrNoNVCC is returned (wrapped) when no nvcc can be found.
var ErrNoNVCC = errors.New("nvcc not found")

// FindNVCC locates nvcc: $PIO_NVCC, then nvcc on PATH, then
// $CUDA_HOME/bin/nvcc and $CUDA_PATH/bin/nvcc, then /usr/local/cuda, then
// the pip wheels nvidia-cuda-nvcc (CUDA 13: nvidia/cu13/bin/nvcc; CUDA 12:
// nvidia/cuda_nvcc/bin/nvcc) in the active virtual environment or the
// site-packages of python3.
func FindNVCC() (string, error) {
	if p := os.Getenv("PIO_NVCC"); p != "" {
		if isExec(p) {
			return p, nil
		}
		return "", fmt.Errorf("%w: PIO_NVCC=%s is not an executable", ErrNoNVCC, p)
	}
	if p, err := exec.LookPath("nvcc"); err == nil {
		return p, nil
	}
	var tried []string
	for _, env := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if d := os.Getenv(env); d != "" {
			p := filepath.Join(d, "bin", "nvcc")
			if isExec(p) {
				return p, nil
			}
			tried = append(tried, p)
		}
	}
	if p := "/usr/local/cuda/bin/nvcc"; isExec(p) {
		return p, nil
	}
	for _, sp := range sitePackages() {
		for _, rel := range []string{"nvidia/cu13/bin/nvcc", "nvidia/cuda_nvcc/bin/nvcc"} {
			p := filepath.Join(sp, rel)
			if isExec(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w on PATH, in $CUDA_HOME, $CUDA_PATH, /usr/local/cuda or a pip wheel (pip install nvidia-cuda-nvcc)%s", ErrNoNVCC, triedList(tried))
}

func triedList(t []string) string {
	if len(t) == 0 {
		return ""
	}
	return " (tried " + strings.Join(t, ", ") + ")"
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// sitePackages lists the site-packages directories of $VIRTUAL_ENV and of
// python3 (if present).
func sitePackages() []string {
	var dirs []string
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		m, _ := filepath.Glob(filepath.Join(v, "lib", "python3*", "site-packages"))
		dirs = append(dirs, m...)
	}
	if py, err := exec.LookPath("python3"); err == nil {
		out, err := exec.Command(py, "-c", "import site, sys; print('\\n'.join(site.getsitepackages() + [site.getusersitepackages()]))").Output()
		if err == nil {
			dirs = append(dirs, strings.Fields(string(out))...)
		}
	}
	return dirs
}

// CompileOptions configure Compile.
type CompileOptions struct {
	NVCC     string   // path; "" finds it with FindNVCC
	Archs    []string // default DefaultArchs
	CacheDir string   // default os.UserCacheDir()/pio/cuda; "-" disables the cache
	Jobs     int      // parallel nvcc processes; default GOMAXPROCS
	// Progress, if set, is called after each image with the count done.
	Progress func(done, total int, arch string, cached bool)
}

// nvccFlags are the flags of every compilation (besides the target).
var nvccFlags = []string{"-O3", "-std=c++17", "-lineinfo", "--Werror", "all-warnings"}

// gencode returns the nvcc target flags and the output mode of an arch.
func gencode(arch string) (mode string, flags []string, err error) {
	var n string
	switch {
	case strings.HasPrefix(arch, "sm_"):
		n = strings.TrimPrefix(arch, "sm_")
		mode = "-cubin"
		flags = []string{fmt.Sprintf("-gencode=arch=compute_%s,code=sm_%s", n, n)}
	case strings.HasPrefix(arch, "compute_"):
		n = strings.TrimPrefix(arch, "compute_")
		mode = "-ptx"
		flags = []string{fmt.Sprintf("-gencode=arch=compute_%s,code=compute_%s", n, n)}
	}
	if len(n) < 2 || strings.Trim(n, "0123456789af") != "" {
		return "", nil, fmt.Errorf("bad CUDA arch %q (want sm_NN, sm_NNa or compute_NN)", arch)
	}
	return mode, flags, nil
}

// Compile compiles src for every arch, in parallel, and returns the images
// in the order of Archs. Results are cached by the hash of nvcc's version,
// the flags and the source.
func Compile(ctx context.Context, src string, opt CompileOptions) ([]abi.Image, error) {
	nvcc := opt.NVCC
	if nvcc == "" {
		var err error
		if nvcc, err = FindNVCC(); err != nil {
			return nil, err
		}
	}
	archs := opt.Archs
	if len(archs) == 0 {
		archs = DefaultArchs
	}
	for _, a := range archs {
		if _, _, err := gencode(a); err != nil {
			return nil, err
		}
	}
	ver, err := exec.CommandContext(ctx, nvcc, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --version: %w", nvcc, err)
	}
	cache := opt.CacheDir
	if cache == "" {
		d, err := os.UserCacheDir()
		if err == nil {
			cache = filepath.Join(d, "pio", "cuda")
		} else {
			cache = "-"
		}
	}
	jobs := opt.Jobs
	if jobs <= 0 {
		jobs = goruntime.GOMAXPROCS(0)
	}
	images := make([]abi.Image, len(archs))
	errs := make([]error, len(archs))
	var (
		mu   sync.Mutex
		done int
		wg   sync.WaitGroup
		sem  = make(chan struct{}, jobs)
	)
	for i, arch := range archs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			data, cached, err := compileOne(ctx, nvcc, string(ver), src, arch, cache)
			images[i], errs[i] = abi.Image{Arch: arch, Data: data}, err
			mu.Lock()
			done++
			if opt.Progress != nil && err == nil {
				opt.Progress(done, len(archs), arch, cached)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return images, nil
}

// CacheKey is the content hash a compiled image is cached under.
func CacheKey(nvccVersion, src, arch string) string {
	h := sha256.New()
	for _, s := range append([]string{nvccVersion, arch, src}, nvccFlags...) {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func compileOne(ctx context.Context, nvcc, ver, src, arch, cache string) ([]byte, bool, error) {
	mode, flags, _ := gencode(arch)
	key := CacheKey(ver, src, arch)
	var path string
	if cache != "-" {
		path = filepath.Join(cache, key[:2], key+"."+arch)
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b, true, nil
		}
	}
	dir, err := os.MkdirTemp("", "pio-nvcc-")
	if err != nil {
		return nil, false, err
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "module.cu"), filepath.Join(dir, "module."+arch)
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		return nil, false, err
	}
	args := append(append(append([]string{mode}, flags...), nvccFlags...), "-o", out, in)
	cmd := exec.CommandContext(ctx, nvcc, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, false, fmt.Errorf("nvcc %s: %w\n%s", arch, err, tail(stderr.String(), 4000))
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, false, fmt.Errorf("nvcc %s: no output: %w", arch, err)
	}
	if len(b) == 0 {
		return nil, false, fmt.Errorf("nvcc %s: empty output", arch)
	}
	if path != "" {
		// Best effort: a failed cache write costs a recompile next time.
		if os.MkdirAll(filepath.Dir(path), 0o755) == nil {
			if f, err := os.CreateTemp(filepath.Dir(path), key+".tmp*"); err == nil {
				_, werr := f.Write(b)
				if cerr := f.Close(); werr == nil && cerr == nil {
					_ = os.Rename(f.Name(), path)
				} else {
					_ = os.Remove(f.Name())
				}
			}
		}
	}
	return b, false, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
