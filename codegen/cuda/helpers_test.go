package cuda

// Helpers the nvcc tests share; exported so that the external tests
// (package cuda_test) use them too.

import (
	"context"
	"strings"
	"testing"
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
func CompileEveryArch(t *testing.T, nvcc, src string, names []string) []Image {
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
