package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
)

// The generator writes a checkpoint the HF frontend opens, with the shape's
// tensors, and the same seed gives the same bytes.
func TestWriteDeterministic(t *testing.T) {
	s := shapes["tiny"]
	s.Layers = 1
	a, b := t.TempDir(), t.TempDir()
	for _, d := range []string{a, b} {
		if err := write(d, s, 7); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"model.safetensors", "config.json"} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with one seed (%d, %d bytes)", f, len(x), len(y))
		}
	}
	ck, err := hf.OpenCheckpoint(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	if got := len(ck.Names()); got != 2+11*s.Layers {
		t.Errorf("%d tensors, want %d", got, 2+11*s.Layers)
	}
	if e, ok := ck.Tensor("model.embed_tokens.weight"); !ok || e.Shape[0] != int64(s.Vocab) || e.Shape[1] != int64(s.Hidden) {
		t.Errorf("embedding: %v", e)
	}
}
