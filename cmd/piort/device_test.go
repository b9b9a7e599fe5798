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
