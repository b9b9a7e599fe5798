package sample

import (
	"math"
	"testing"
)

func TestGreedyAndErrors(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Sample([]float32{1, 3, 3, 2}); got != 1 {
		t.Errorf("greedy picked %d, want the first maximum 1", got)
	}
	if _, err := s.Sample(nil); err == nil {
		t.Error("empty logits: want an error")
	}
	for _, temp := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := New(Options{Temperature: temp}); err == nil {
			t.Errorf("temperature %v: want an error", temp)
		}
	}
	hot, _ := New(Options{Temperature: 1})
	if _, err := hot.Sample([]float32{float32(math.NaN()), 1}); err == nil {
		t.Error("NaN logits: want an error")
	}
}

// Sampling at temperature 1 follows softmax(logits): check the empirical
// frequencies over many draws.
func TestTemperatureDistribution(t *testing.T) {
	s, _ := New(Options{Temperature: 1, Seed: 7})
	logits := []float32{0, float32(math.Log(3))} // p = 1/4, 3/4
	n, ones := 20000, 0
	for i := 0; i < n; i++ {
		if tok, _ := s.Sample(logits); tok == 1 {
			ones++
		}
	}
	if f := float64(ones) / float64(n); math.Abs(f-0.75) > 0.015 {
		t.Errorf("token 1 drawn with frequency %.3f, want 0.75", f)
	}
}
