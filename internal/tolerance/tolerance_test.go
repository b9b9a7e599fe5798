package tolerance

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWithin(t *testing.T) {
	log := filepath.Join(t.TempDir(), "tol.tsv")
	t.Setenv(LogEnv, log)
	for _, c := range []struct {
		err, bound float64
		want       bool
	}{{0, 1e-5, true}, {1e-5, 1e-5, true}, {2e-5, 1e-5, false}, {math.NaN(), 1, false}} {
		if got := Within(t, c.err, c.bound); got != c.want {
			t.Errorf("Within(%g, %g) = %v, want %v", c.err, c.bound, got, c.want)
		}
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d records, want 4:\n%s", len(lines), b)
	}
	f := strings.Split(lines[2], "\t")
	if len(f) != 4 || !strings.HasPrefix(f[0], "internal/tolerance/tolerance_test.go:") || f[1] != t.Name() || f[2] != "2e-05" || f[3] != "1e-05" {
		t.Errorf("record %q: want the caller's file:line, the test name, err and bound", lines[2])
	}
}
