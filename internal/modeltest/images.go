package modeltest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/inference-pio/pio/internal/golden"
)

// Images reads the named files of the repository's testdata/images (the
// vision goldens' inputs), in order; a missing file fails the test.
func Images(t testing.TB, names ...string) [][]byte {
	t.Helper()
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(root, "..", "images", n))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}
