package compiler

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/runtime/engine"
)

// fakeNVCC writes an nvcc stand-in that writes "image <target>" to its -o
// file.
func fakeNVCC(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nvcc")
	script := `#!/bin/sh
if [ "$1" = "--version" ]; then echo "Cuda compilation tools, fake"; exit 0; fi
out=""; target=""
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift ;; -gencode=*) target="$1" ;; esac
  shift
done
echo "image $target" > "$out"
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildTargetCUDA(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	out := filepath.Join(t.TempDir(), "e.pio")
	res, err := Build(Options{Source: tinyDir(t, "qwen3-a"), Output: out, Target: TargetCUDA, NVCC: fakeNVCC(t)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(out, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	k := e.Meta.Kernels
	if k == nil {
		t.Fatal("no kernels section")
	}
	var archs []string
	for _, im := range k.Images {
		archs = append(archs, im.Arch)
		if !strings.HasPrefix(string(im.Data), "image -gencode=") {
			t.Errorf("%s: image %q", im.Arch, im.Data)
		}
	}
	if strings.Join(archs, ",") != strings.Join(cuda.DefaultArchs, ",") {
		t.Errorf("images %v, want %v", archs, cuda.DefaultArchs)
	}
	if k.Compiler != "Cuda compilation tools, fake" || !strings.Contains(string(k.Source), "DO NOT EDIT") {
		t.Errorf("compiler %q, source %d bytes", k.Compiler, len(k.Source))
	}
	steps := map[int32]bool{}
	for _, l := range k.Launches {
		steps[l.Step] = true
	}
	if len(steps) != len(res.Plan.Steps) {
		t.Errorf("launches cover %d of %d steps", len(steps), len(res.Plan.Steps))
	}
}

func TestBuildTargetErrors(t *testing.T) {
	dir := tinyDir(t, "qwen3-a")
	out := filepath.Join(t.TempDir(), "e.pio")
	if _, err := Build(Options{Source: dir, Output: out, Target: "tpu"}); err == nil || !strings.Contains(err.Error(), `unknown target "tpu"`) {
		t.Errorf("tpu: %v", err)
	}
	if _, err := os.Stat("/usr/local/cuda/bin/nvcc"); err == nil {
		t.Skip("skipping the no-nvcc case: /usr/local/cuda/bin/nvcc exists")
	}
	t.Setenv("PATH", t.TempDir())
	t.Setenv("PIO_NVCC", "")
	t.Setenv("CUDA_HOME", "")
	t.Setenv("CUDA_PATH", "")
	t.Setenv("VIRTUAL_ENV", "")
	_, err := Build(Options{Source: dir, Output: out, Target: TargetCUDA})
	if !errors.Is(err, cuda.ErrNoNVCC) || !strings.Contains(err.Error(), "--target cuda needs nvcc") {
		t.Errorf("no nvcc: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("an engine was written without nvcc")
	}
}
