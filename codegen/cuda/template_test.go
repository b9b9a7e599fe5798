package cuda

import (
	"strings"
	"testing"
	"text/template"
)

// TestEmitError: a kernel template that fails to execute (here a hole its
// data lacks) is an error naming the kernel, and adds no kernel.
func TestEmitError(t *testing.T) {
	g := &gen{names: map[string]string{}, m: &Module{}}
	bad := template.Must(template.New("bad").Parse("// {{.Missing}}\n"))
	if _, err := g.emit("bad", bad, struct{}{}); err == nil || !strings.Contains(err.Error(), "kernel bad") {
		t.Errorf("got %v, want an error naming kernel bad", err)
	}
	if len(g.m.Kernels) != 0 || len(g.bodies) != 0 {
		t.Errorf("a failed kernel was added: %v", g.m.Kernels)
	}
}

// TestIndentFragment: indent moves a fragment's lines two columns right
// but leaves #pragma lines in the first column.
func TestIndentFragment(t *testing.T) {
	got := indentFragment("#pragma unroll\n    for (;;) {\n    }")
	if want := "#pragma unroll\n      for (;;) {\n      }"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
