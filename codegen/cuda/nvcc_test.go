package cuda

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// fakeNVCC writes an nvcc stand-in that logs each compilation to log and
// writes "image <target>" to its -o file (or fails when the source holds
// FAIL).
func fakeNVCC(t *testing.T, dir string) (nvcc, log string) {
	t.Helper()
	nvcc, log = filepath.Join(dir, "nvcc"), filepath.Join(dir, "calls.log")
	script := `#!/bin/sh
if [ "$1" = "--version" ]; then echo "fake nvcc 1.0"; exit 0; fi
out=""; target=""; src=""
while [ $# -gt 0 ]; do
  case "$1" in
    -o) out="$2"; shift ;;
    -gencode=*) target="$1" ;;
    *.cu) src="$1" ;;
  esac
  shift
done
echo "$target" >> "` + log + `"
if grep -q FAIL "$src"; then echo "module.cu(1): error: FAIL found" >&2; exit 2; fi
echo "image $target" > "$out"
`
	if err := os.WriteFile(nvcc, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return nvcc, log
}

func lines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

func TestCompileFakeNVCC(t *testing.T) {
	dir := t.TempDir()
	nvcc, log := fakeNVCC(t, dir)
	cache := filepath.Join(dir, "cache")
	var progress atomic.Int32
	opt := CompileOptions{NVCC: nvcc, CacheDir: cache, Progress: func(done, total int, arch string, cached bool) {
		progress.Add(1)
		if total != len(DefaultArchs) || done < 1 || done > total {
			t.Errorf("progress %d/%d", done, total)
		}
	}}
	imgs, err := Compile(context.Background(), "kernel A", opt)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"sm_80":      "-gencode=arch=compute_80,code=sm_80",
		"sm_89":      "-gencode=arch=compute_89,code=sm_89",
		"sm_90a":     "-gencode=arch=compute_90a,code=sm_90a",
		"compute_90": "-gencode=arch=compute_90,code=compute_90",
	}
	if len(imgs) != len(DefaultArchs) {
		t.Fatalf("%d images", len(imgs))
	}
	for i, im := range imgs {
		if im.Arch != DefaultArchs[i] || strings.TrimSpace(string(im.Data)) != "image "+want[im.Arch] {
			t.Errorf("image %d: %s %q", i, im.Arch, im.Data)
		}
	}
	if n := len(lines(t, log)); n != 4 || progress.Load() != 4 {
		t.Errorf("%d nvcc runs, %d progress calls; want 4, 4", n, progress.Load())
	}

	// The same source again: all from the cache, no nvcc run.
	if _, err := Compile(context.Background(), "kernel A", opt); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, log)); n != 4 {
		t.Errorf("cached compile ran nvcc: %d runs", n)
	}
	// A changed source compiles again.
	if _, err := Compile(context.Background(), "kernel B", CompileOptions{NVCC: nvcc, CacheDir: cache, Archs: []string{"sm_80"}}); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(t, log)); n != 5 {
		t.Errorf("new source: %d runs, want 5", n)
	}
	// Errors carry nvcc's message and the arch.
	_, err = Compile(context.Background(), "FAIL", CompileOptions{NVCC: nvcc, CacheDir: "-", Archs: []string{"sm_89"}})
	if err == nil || !strings.Contains(err.Error(), "nvcc sm_89") || !strings.Contains(err.Error(), "error: FAIL found") {
		t.Errorf("failing compile: %v", err)
	}
	if _, err := Compile(context.Background(), "x", CompileOptions{NVCC: nvcc, Archs: []string{"sm_8x"}}); err == nil {
		t.Error("bad arch accepted")
	}
}

func TestFindNVCC(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	clear := func() {
		t.Setenv("PATH", empty)
		t.Setenv("PIO_NVCC", "")
		t.Setenv("CUDA_HOME", "")
		t.Setenv("CUDA_PATH", "")
		t.Setenv("VIRTUAL_ENV", "")
	}
	if _, err := os.Stat("/usr/local/cuda/bin/nvcc"); err == nil {
		t.Skip("skipping: /usr/local/cuda/bin/nvcc exists and would always be found")
	}
	clear()
	if _, err := FindNVCC(); !errors.Is(err, ErrNoNVCC) || !strings.Contains(err.Error(), "pip install nvidia-cuda-nvcc") {
		t.Errorf("no nvcc: %v", err)
	}

	onPath := filepath.Join(dir, "path")
	home := filepath.Join(dir, "cudahome", "bin")
	wheel := filepath.Join(dir, "venv", "lib", "python3.11", "site-packages", "nvidia", "cu13", "bin")
	for _, d := range []string{onPath, home, wheel} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		fakeNVCC(t, d)
	}
	clear()
	t.Setenv("VIRTUAL_ENV", filepath.Join(dir, "venv"))
	if p, err := FindNVCC(); err != nil || p != filepath.Join(wheel, "nvcc") {
		t.Errorf("wheel: %q %v", p, err)
	}
	t.Setenv("CUDA_HOME", filepath.Join(dir, "cudahome"))
	if p, err := FindNVCC(); err != nil || p != filepath.Join(home, "nvcc") {
		t.Errorf("CUDA_HOME: %q %v", p, err)
	}
	t.Setenv("PATH", onPath)
	if p, err := FindNVCC(); err != nil || p != filepath.Join(onPath, "nvcc") {
		t.Errorf("PATH: %q %v", p, err)
	}
	t.Setenv("PIO_NVCC", filepath.Join(dir, "nope"))
	if _, err := FindNVCC(); !errors.Is(err, ErrNoNVCC) {
		t.Errorf("bad PIO_NVCC: %v", err)
	}
}
