// Package sample turns a step's logits into the next token: greedy, or
// temperature sampling from a seeded generator so runs are reproducible.
// (Top-k/top-p, penalties and logprobs arrive with the serving work.)
package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Options configure a Sampler.
type Options struct {
	// Temperature 0 selects greedy decoding (the argmax, lowest id on ties).
	Temperature float64
	// Seed makes sampling reproducible.
	Seed uint64
}

// Sampler draws tokens; it keeps scratch space, so one per sequence.
type Sampler struct {
	opt   Options
	rng   *rand.Rand
	probs []float64
}

// New validates opt and returns a sampler.
func New(opt Options) (*Sampler, error) {
	if opt.Temperature < 0 || math.IsNaN(opt.Temperature) || math.IsInf(opt.Temperature, 0) {
		return nil, fmt.Errorf("temperature must be >= 0, got %v", opt.Temperature)
	}
	return &Sampler{opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15))}, nil
}

// Argmax returns the index of the largest logit (the first on ties).
func Argmax(logits []float32) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// Sample picks the next token from logits.
func (s *Sampler) Sample(logits []float32) (int32, error) {
	if len(logits) == 0 {
		return 0, fmt.Errorf("sample: empty logits")
	}
	if s.opt.Temperature == 0 {
		return Argmax(logits), nil
	}
	maxv := float64(logits[Argmax(logits)])
	if math.IsNaN(maxv) || math.IsInf(maxv, 0) {
		return 0, fmt.Errorf("sample: logits are not finite")
	}
	if cap(s.probs) < len(logits) {
		s.probs = make([]float64, len(logits))
	}
	p := s.probs[:len(logits)]
	sum := 0.0
	for i, v := range logits {
		p[i] = math.Exp((float64(v) - maxv) / s.opt.Temperature)
		sum += p[i]
	}
	r := s.rng.Float64() * sum
	for i, v := range p {
		r -= v
		if r < 0 {
			return int32(i), nil
		}
	}
	return Argmax(logits), nil
}
