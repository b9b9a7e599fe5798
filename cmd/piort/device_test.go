package main

import (
	"testing"
)

func TestParseDevice(t *testing.T) {
	for _, c := range []struct {
		in   string
		kind string
		n    int
		ok   bool
	}{
		{"cpu", "cpu", 0, true},
		{"cuda", "cuda", 0, true},
		{"cuda:0", "cuda", 0, true},
		{"CUDA:3", "cuda", 3, true},
		{"cuda:", "", 0, false},
		{"cuda:-1", "", 0, false},
		{"cuda:x", "", 0, false},
		{"cpu:1", "", 0, false},
		{"gpu", "", 0, false},
		{"", "", 0, false},
	} {
		kind, n, err := parseDevice(c.in)
		if (err == nil) != c.ok || kind != c.kind || n != c.n {
			t.Errorf("parseDevice(%q) = %q, %d, %v", c.in, kind, n, err)
		}
	}
}

// --device on serve and text runs reaches the backend choice: cpu keeps the
// default, a bad spelling is refused, and cuda asks for a CUDA backend.
func TestPioBackend(t *testing.T) {
	if f, err := pioBackend("cpu"); f != nil || err != nil {
		t.Errorf("cpu: got a factory or %v", err)
	}
	if _, err := pioBackend("gpu"); err == nil {
		t.Error("--device gpu: want an error")
	}
	if f, err := pioBackend("cuda:1"); f == nil || err != nil {
		t.Errorf("cuda:1: want a factory, got %v", err)
	}
}
