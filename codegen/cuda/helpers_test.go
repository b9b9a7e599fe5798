package cuda

// Helpers the nvcc tests share; exported so that the external tests
// (package cuda_test) use them too.

import (
	"context"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/passes"
)

// NVCCOrSkip returns the nvcc the compile tests run, and skips the test
// where there is none or in -short mode.
func NVCCOrSkip(t *testing.T) string {
	t.Helper()
	nvcc, err := FindNVCC()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	if testing.Short() {
		t.Skip("skipping nvcc in -short mode")
	}
	return nvcc
}

// KernelSource gathers the distinct kernels of several modules into one
// source after the prelude (symbols are content hashes, so equal names are
// equal kernels): one nvcc run per arch compiles them all.
type KernelSource struct {
	src   strings.Builder
	seen  map[string]bool
	Names []string // the kernels added, in the order first added
}

// NewKernelSource returns a source holding the prelude only.
func NewKernelSource() *KernelSource {
	s := &KernelSource{seen: map[string]bool{}}
	s.src.WriteString(prelude)
	return s
}

// Add adds the kernels of m that keep accepts (their names to Names) and
// the bodies that keepBody accepts, each once; nil keeps everything.
func (s *KernelSource) Add(m *Module, keep, keepBody func(string) bool) {
	for _, k := range m.Kernels {
		if (keep == nil || keep(k)) && !s.seen[k] {
			s.seen[k] = true
			s.Names = append(s.Names, k)
		}
	}
	for _, b := range m.bodies {
		if (keepBody == nil || keepBody(b)) && !s.seen["body:"+b] {
			s.seen["body:"+b] = true
			s.src.WriteString("\n" + b)
		}
	}
}

// AddKernel adds a kernel's body under its name.
func (s *KernelSource) AddKernel(name, body string) {
	s.Names = append(s.Names, name)
	s.src.WriteString("\n" + body)
}

// String is the source: the prelude and the bodies added.
func (s *KernelSource) String() string { return s.src.String() }

// CompileEveryArch compiles src for every default arch with the real nvcc
// (warnings as errors) and checks that every one of names is in every
// image.
func CompileEveryArch(t *testing.T, nvcc, src string, names []string) []abi.Image {
	t.Helper()
	imgs, err := Compile(context.Background(), src, CompileOptions{NVCC: nvcc, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs {
		for _, k := range names {
			if !strings.Contains(string(im.Data), k) {
				t.Errorf("%s: kernel %s missing from the image", im.Arch, k)
			}
		}
	}
	return imgs
}

// LoweredPlan finishes b's graph and lowers it to a plan, with no passes.
func LoweredPlan(t *testing.T, b *ir.Builder) *ir.Plan {
	t.Helper()
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// widthsPlan builds the plan of a model at the widths of an HF config,
// with no checkpoint (has says which weights exist), as pioc build does:
// the pass pipeline, then lowering. Errors name the model.
func widthsPlan(t *testing.T, name, config string, dt ir.DType, has func(string) bool) *ir.Plan {
	t.Helper()
	cfg, err := hf.ParseConfig([]byte(config))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m, err := models.New(cfg)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	g, err := m.Build(models.BuildOptions{WeightDType: dt, Has: has})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := passes.Run(g, passes.Options{}); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return p
}
