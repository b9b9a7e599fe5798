package compiler

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/ir"
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
	steps := map[int]bool{}
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

// TestBuildTargetCUDAStages builds the tiny Qwen3-VL (a vision stage, then
// the text plan) with --target cuda: each plan gets its own module, whose
// launches cover its steps and whose source is what codegen makes of the
// plan read back from the engine; a second build takes every image from
// the cache. With the fake nvcc it checks the plumbing; with the real one
// (skipped when there is none) that both modules compile, warnings as
// errors, and carry their kernels.
func TestBuildTargetCUDAStages(t *testing.T) {
	for _, real := range []bool{false, true} {
		t.Run(map[bool]string{false: "fake-nvcc", true: "nvcc"}[real], func(t *testing.T) {
			nvcc := fakeNVCC(t)
			if real {
				var err error
				if nvcc, err = cuda.FindNVCC(); err != nil {
					t.Skipf("skipping: %v (set PIO_NVCC)", err)
				}
				if testing.Short() {
					t.Skip("skipping nvcc in -short mode")
				}
			}
			t.Setenv("XDG_CACHE_HOME", t.TempDir())
			var log []string
			opt := Options{Source: tinyDir(t, "qwen3vl"), Output: filepath.Join(t.TempDir(), "vl.pio"), Target: TargetCUDA, NVCC: nvcc,
				Log: func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) }}
			if _, err := Build(opt); err != nil {
				t.Fatal(err)
			}
			e, err := engine.Open(opt.Output, engine.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if len(e.Meta.Stages) != 1 || e.Meta.Stages[0].Name != "vision" {
				t.Fatalf("stages %+v", e.Meta.Stages)
			}
			plans := []*ir.Plan{e.Meta.Stages[0].Plan, e.Meta.Plan}
			for i, k := range []*engine.Kernels{e.Meta.Stages[0].Kernels, e.Meta.Kernels} {
				name := []string{"vision", "text"}[i]
				if k == nil {
					t.Fatalf("%s: no kernels section", name)
				}
				m, err := cuda.Generate(plans[i])
				if err != nil {
					t.Fatal(err)
				}
				if string(k.Source) != m.Source {
					t.Errorf("%s: stored source is not the module of the stored plan", name)
				}
				steps := map[int]bool{}
				for _, l := range k.Launches {
					steps[l.Step] = true
				}
				if len(steps) != len(plans[i].Steps) {
					t.Errorf("%s: launches cover %d of %d steps", name, len(steps), len(plans[i].Steps))
				}
				var archs []string
				for _, im := range k.Images {
					archs = append(archs, im.Arch)
					if !real && !strings.HasPrefix(string(im.Data), "image -gencode=") {
						t.Errorf("%s: %s: image %q", name, im.Arch, im.Data)
					}
					for _, kn := range m.Kernels {
						if real && !bytes.Contains(im.Data, []byte(kn)) {
							t.Errorf("%s: %s: kernel %s missing from the image", name, im.Arch, kn)
						}
					}
				}
				if strings.Join(archs, ",") != strings.Join(cuda.DefaultArchs, ",") {
					t.Errorf("%s: images %v, want %v", name, archs, cuda.DefaultArchs)
				}
			}
			if !strings.Contains(string(e.Meta.Stages[0].Kernels.Source), "segment_attention") || strings.Contains(string(e.Meta.Kernels.Source), "segment_attention") {
				t.Error("the vision stage's attention kernel is not in the vision module alone")
			}

			// Again: every image of both modules from the cache.
			log = nil
			opt.Output = filepath.Join(t.TempDir(), "vl2.pio")
			if _, err := Build(opt); err != nil {
				t.Fatal(err)
			}
			cached := 0
			for _, l := range log {
				if strings.Contains(l, " cached (") {
					cached++
				}
			}
			if want := 2 * len(cuda.DefaultArchs); cached != want {
				t.Errorf("second build: %d images cached, want %d:\n%s", cached, want, strings.Join(log, "\n"))
			}
		})
	}
}
