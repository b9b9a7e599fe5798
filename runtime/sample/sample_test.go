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

// Greedy holds exactly when Next would return the raw argmax with nothing
// else, and Accept of that argmax gives what Next gives.
func TestGreedyAccept(t *testing.T) {
	logits := []float32{0.5, 2, -1, 2, 1.5}
	for _, c := range []struct {
		opt    Options
		greedy bool
	}{
		{Options{}, true},
		{Options{RepetitionPenalty: 1, Seed: 7}, true},
		{Options{Temperature: 0.7}, false},
		{Options{RepetitionPenalty: 1.3}, false},
		{Options{PresencePenalty: 0.5}, false},
		{Options{FrequencyPenalty: -0.5}, false},
		{Options{Logprobs: true}, false},
		{Options{LogitBias: map[int32]float32{4: 1}}, false},
		{Options{TopLogprobs: 2}, false},
	} {
		s, err := New(c.opt)
		if err != nil {
			t.Fatal(err)
		}
		if s.Greedy() != c.greedy {
			t.Errorf("%+v: Greedy %v, want %v", c.opt, s.Greedy(), c.greedy)
		}
		if !c.greedy {
			continue
		}
		want, err := s.Next(logits)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Accept(Argmax(logits))
		if err != nil || got.Token != want.Token || got.Top != nil {
			t.Errorf("%+v: Accept gave %+v %v, Next %+v", c.opt, got, err, want)
		}
		if s.counts[want.Token] != 2 {
			t.Errorf("Accept did not record the token: counts %v", s.counts)
		}
		if _, err := s.Accept(-1); err == nil {
			t.Errorf("Accept(-1): want the non-finite error")
		}
	}
}
