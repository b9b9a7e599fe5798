package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// fixedConstraint allows a fixed set of tokens and records what it accepts.
type fixedConstraint struct {
	allow    map[int32]bool
	accepted []int32
}

func (c *fixedConstraint) Mask(dst []uint64) {
	for id := range c.allow {
		dst[id/64] |= 1 << (uint(id) % 64)
	}
}

func (c *fixedConstraint) Accept(id int32) error {
	if !c.allow[id] {
		return errors.New("disallowed token")
	}
	c.accepted = append(c.accepted, id)
	return nil
}

func (c *fixedConstraint) Done() bool { return false }

// TestConstraintRenormalises: under a constraint the sampler draws from
// the unconstrained distribution renormalised over the allowed tokens,
// exactly: with the same seed it draws the same tokens as an unconstrained
// sampler given the row with the disallowed logits at -inf, greedy and at
// temperature 1 (with and without top-k/top-p), and its log-probabilities
// are log(p_i / sum over allowed p_j).
func TestConstraintRenormalises(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const vocab = 300
	row := make([]float32, vocab)
	for i := range row {
		row[i] = float32(rng.NormFloat64() * 3)
	}
	allow := map[int32]bool{}
	for i := int32(0); i < vocab; i++ {
		if rng.IntN(5) == 0 {
			allow[i] = true
		}
	}
	manual := make([]float32, vocab)
	sum := 0.0
	for i, v := range row {
		manual[i] = float32(math.Inf(-1))
		if allow[int32(i)] {
			manual[i] = v
			sum += math.Exp(float64(v))
		}
	}
	for _, o := range []Options{
		{Temperature: 0, Logprobs: true, TopLogprobs: 5},
		{Temperature: 1, Seed: 7, Logprobs: true, TopLogprobs: 5},
		{Temperature: 1, Seed: 7, TopK: 100},
		{Temperature: 0.7, Seed: 3, TopP: 0.9, MinP: 0.01},
	} {
		ref, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		c := &fixedConstraint{allow: allow}
		o.Constraint = c
		con, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		if con.Greedy() {
			t.Fatal("a constrained sampler must not be Greedy")
		}
		if _, ok := con.Candidates(); ok {
			t.Fatal("a constrained sampler must not take Candidates")
		}
		for step := 0; step < 500; step++ {
			want, err := ref.Next(manual)
			if err != nil {
				t.Fatal(err)
			}
			got, err := con.Next(row)
			if err != nil {
				t.Fatal(err)
			}
			if got.Token != want.Token || !allow[got.Token] {
				t.Fatalf("%+v step %d: constrained drew %d, renormalised %d", o, step, got.Token, want.Token)
			}
			if o.Logprobs {
				exact := float32(float64(row[got.Token]) - math.Log(sum))
				if d := math.Abs(float64(got.Logprob - exact)); d > 1e-4 {
					t.Fatalf("logprob %v, renormalised %v", got.Logprob, exact)
				}
				for _, e := range got.Top {
					if !allow[e.Token] {
						t.Fatalf("top logprobs hold masked token %d", e.Token)
					}
				}
			}
		}
		if len(c.accepted) != 500 {
			t.Fatalf("constraint accepted %d tokens, want 500", len(c.accepted))
		}
	}
}

// TestConstraintEmpty: a constraint allowing no token is an error.
func TestConstraintEmpty(t *testing.T) {
	s, err := New(Options{Temperature: 1, Constraint: &fixedConstraint{allow: map[int32]bool{}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Next([]float32{1, 2, 3}); !errors.Is(err, ErrNoAllowedToken) {
		t.Fatalf("got %v, want ErrNoAllowedToken", err)
	}
}
