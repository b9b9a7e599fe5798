package grammar

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// SentenceOptions steer RandomSentence towards sentences that end.
type SentenceOptions struct {
	// MaxLen is the most bytes a sentence may have.
	MaxLen int
	// Closers are bytes that end things (`"]}` for JSON): when any is
	// allowed, one is taken a third of the time.
	Closers string
	// Tails are strings that end things as a whole (a closing tag): one
	// is tried an eighth of the time, kept if the grammar accepts it.
	Tails []string
}

// RandomSentence follows g with random allowed bytes from rng until it
// may end (then stopping a quarter of the time, or when nothing more can
// follow): a random sentence of g, for tests that check what a grammar
// admits (with an independent validator, or a format's parser). ok is
// false when MaxLen came first. An error means the matcher contradicted
// itself: a byte Allowed reported that Accept then rejected, or no byte
// allowed where the grammar cannot end.
func (g *Grammar) RandomSentence(rng *rand.Rand, o SentenceOptions) (s string, ok bool, err error) {
	m := g.NewMatcher()
	var out []byte
	for len(out) < o.MaxLen {
		if m.CanEnd() && (m.Done() || rng.IntN(4) == 0) {
			return string(out), true, nil
		}
		if len(o.Tails) > 0 && rng.IntN(8) == 0 {
			tail := o.Tails[rng.IntN(len(o.Tails))]
			if c := m.Clone(); c.AcceptString(tail) {
				m, out = c, append(out, tail...)
				continue
			}
		}
		set := m.Allowed()
		var allowed, closers []byte
		for c := 0; c < 256; c++ {
			if set[c>>6]&(1<<(c&63)) != 0 {
				allowed = append(allowed, byte(c))
				if strings.IndexByte(o.Closers, byte(c)) >= 0 {
					closers = append(closers, byte(c))
				}
			}
		}
		if len(allowed) == 0 {
			return string(out), false, fmt.Errorf("grammar: stuck after %q: no byte allowed and the grammar cannot end", out)
		}
		c := allowed[rng.IntN(len(allowed))]
		if len(closers) > 0 && rng.IntN(3) == 0 {
			c = closers[rng.IntN(len(closers))]
		}
		if !m.Accept([]byte{c}) {
			return string(out), false, fmt.Errorf("grammar: after %q: Allowed has %q but Accept rejects it", out, c)
		}
		out = append(out, c)
	}
	return string(out), false, nil
}
