package scheduler

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/sample"
)

// seqConstraint allows exactly the next token of want, then is Done; with
// want empty it allows nothing.
type seqConstraint struct {
	want []int32
	pos  int
}

func (c *seqConstraint) Mask(dst []uint64) {
	if c.pos < len(c.want) {
		id := c.want[c.pos]
		dst[id/64] |= 1 << (uint(id) % 64)
	}
}

func (c *seqConstraint) Accept(id int32) error {
	if c.pos >= len(c.want) || id != c.want[c.pos] {
		return errors.New("rejected")
	}
	c.pos++
	return nil
}

func (c *seqConstraint) Done() bool { return c.pos == len(c.want) }

// TestConstraintTakesLogits: a constrained request, greedy or sampled,
// never takes a backend's argmax or candidates, its tokens follow the
// constraint (far below the best) and it stops ("stop") when the
// constraint is Done; a constraint that allows no token at the start ends
// the request with an error.
func TestConstraintTakesLogits(t *testing.T) {
	cfg := Config{MaxStepTokens: 16, MaxSeqs: 4, VocabSize: vocab}
	want := []int32{40, 41, 7}
	for _, c := range []struct {
		name string
		opt  sample.Options
	}{
		{"greedy", sample.Options{}},
		{"sampled", sample.Options{Temperature: 0.5, Seed: 3}},
	} {
		f := &candBackend{spreadBackend: spreadBackend{fakeBackend: newFake(128, 4, cfg.MaxStepTokens, cfg.MaxSeqs)}}
		s, err := New(f, kvcache.NewAllocator(128, 4), cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.opt.Constraint = &seqConstraint{want: want}
		st, err := s.Submit(context.Background(), Request{Prompt: prompt(9, 1), MaxTokens: 10, Sample: c.opt})
		if err != nil {
			t.Fatal(err)
		}
		got, why, err := collect(t, st)
		s.Close()
		if err != nil || why != FinishStop || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v %v, want %v and stop", c.name, got, why, err, want)
		}
		if f.argmaxes != 0 || f.cands != 0 {
			t.Errorf("%s: %d argmaxes, %d candidate lists; want none", c.name, f.argmaxes, f.cands)
		}
	}
	s, _, _ := newSched(t, 8, 4, cfg)
	st, err := s.Submit(context.Background(), Request{Prompt: []int32{1}, MaxTokens: 4, Sample: sample.Options{Constraint: &seqConstraint{}}})
	if err != nil {
		t.Fatal(err)
	}
	if got, why, err := collect(t, st); why != FinishError || !errors.Is(err, sample.ErrNoAllowedToken) || len(got) != 0 {
		t.Errorf("empty constraint: %v %v %v, want an error", got, why, err)
	}
}
