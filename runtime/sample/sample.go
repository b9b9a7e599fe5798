// Package sample turns a step's logits into the next token: greedy, or
// sampling from a seeded generator so runs are reproducible, with the
// processing an OpenAI-style request asks for — repetition, presence and
// frequency penalties, logit bias, temperature, top-k, top-p and min-p — and the
// log-probabilities of the chosen and the most likely tokens.
//
// What it is not: it knows nothing of stop conditions or text; the
// scheduler ends sequences, the serving layer handles strings.
package sample

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
)

// MaxTopLogprobs is the most alternatives Options.TopLogprobs may ask for.
const MaxTopLogprobs = 20

// MaxLogitBias is the largest magnitude of an Options.LogitBias value
// (OpenAI's range, [-100, 100]).
const MaxLogitBias = 100

// Options configure a Sampler. The zero value is greedy decoding with no
// penalties.
type Options struct {
	// Temperature 0 selects greedy decoding (the argmax, lowest id on ties).
	Temperature float64
	// TopK keeps the K most likely tokens; 0 keeps all.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP; 0 and 1 keep all.
	TopP float64
	// MinP drops tokens less likely than MinP times the most likely; 0 keeps all.
	MinP float64
	// RepetitionPenalty (transformers' definition: positive logits divided
	// by it, negative ones multiplied) applies to every token of the prompt
	// and of the output; 0 and 1 disable it.
	RepetitionPenalty float64
	// PresencePenalty and FrequencyPenalty (OpenAI's definitions, in
	// [-2, 2]) subtract from the logit of each token already generated: the
	// presence penalty once, the frequency penalty once per occurrence.
	PresencePenalty  float64
	FrequencyPenalty float64
	// LogitBias adds, to the logit of each token id it names, a bias in
	// [-MaxLogitBias, MaxLogitBias] (OpenAI's logit_bias), after the
	// penalties and before greedy selection or sampling: -100 all but bans
	// a token, +100 all but forces it. Every id must be in the vocabulary
	// (Next fails otherwise). A bias needs the whole row of logits, so a
	// sampler with one is neither Greedy nor takes Candidates: its tokens
	// never come from a backend's argmax or candidate list, which could
	// not see a token the bias lifts from far below the best.
	LogitBias map[int32]float32
	// Seed makes sampling reproducible.
	Seed uint64
	// Logprobs asks for the log-probability of each chosen token, and
	// TopLogprobs (0..MaxTopLogprobs) for that many most likely
	// alternatives. Log-probabilities are those of the model's
	// distribution, before penalties, temperature and truncation.
	Logprobs    bool
	TopLogprobs int
	// Constraint, when set, restricts every token to those it allows
	// (structured output): the others' logits are -inf before the
	// penalties, the bias and greedy selection or sampling, so the
	// distribution drawn from is the unconstrained one renormalised over
	// the allowed tokens. Log-probabilities are those of that masked
	// distribution (as vLLM, which masks before computing them). A
	// constrained sampler, like a biased one, is neither Greedy nor takes
	// Candidates. The constraint is the request's own state: it advances
	// on each token Next returns.
	Constraint Constraint
}

// A Constraint restricts the tokens of one sequence (a grammar following
// the output so far).
type Constraint interface {
	// Mask sets in dst (zeroed, one bit per token id of the row: bit
	// id%64 of word id/64) the tokens that may come next.
	Mask(dst []uint64)
	// Accept advances the constraint over id, the token chosen.
	Accept(id int32) error
	// Done reports whether the constrained output is complete: nothing
	// may follow.
	Done() bool
}

// Validate reports the first option out of range.
func (o Options) Validate() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	switch {
	case o.Temperature < 0 || bad(o.Temperature):
		return fmt.Errorf("temperature must be >= 0, got %v", o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("top_k must be >= 0, got %d", o.TopK)
	case o.TopP < 0 || o.TopP > 1 || bad(o.TopP):
		return fmt.Errorf("top_p must be in [0, 1], got %v", o.TopP)
	case o.MinP < 0 || o.MinP > 1 || bad(o.MinP):
		return fmt.Errorf("min_p must be in [0, 1], got %v", o.MinP)
	case o.RepetitionPenalty < 0 || bad(o.RepetitionPenalty):
		return fmt.Errorf("repetition_penalty must be > 0, got %v", o.RepetitionPenalty)
	case o.PresencePenalty < -2 || o.PresencePenalty > 2 || bad(o.PresencePenalty):
		return fmt.Errorf("presence_penalty must be in [-2, 2], got %v", o.PresencePenalty)
	case o.FrequencyPenalty < -2 || o.FrequencyPenalty > 2 || bad(o.FrequencyPenalty):
		return fmt.Errorf("frequency_penalty must be in [-2, 2], got %v", o.FrequencyPenalty)
	case o.TopLogprobs < 0 || o.TopLogprobs > MaxTopLogprobs:
		return fmt.Errorf("top_logprobs must be in [0, %d], got %d", MaxTopLogprobs, o.TopLogprobs)
	}
	for id, b := range o.LogitBias {
		if id < 0 {
			return fmt.Errorf("logit_bias: token id %d is negative", id)
		}
		if v := float64(b); v < -MaxLogitBias || v > MaxLogitBias || bad(v) {
			return fmt.Errorf("logit_bias: token %d: bias must be in [-%d, %d], got %v", id, MaxLogitBias, MaxLogitBias, b)
		}
	}
	return nil
}

// TokenLogprob is one token with its log-probability.
type TokenLogprob struct {
	Token   int32
	Logprob float32
}

// Result is one sampled token; Logprob and Top are set when the options
// ask for them (Top most likely first).
type Result struct {
	Token   int32
	Logprob float32
	Top     []TokenLogprob
}

// Sampler draws tokens for one sequence: it keeps the sequence's token
// counts for the penalties, its random generator and scratch space.
type Sampler struct {
	opt     Options
	rng     *rand.Rand
	prompt  map[int32]bool  // tokens of the prompt (repetition penalty)
	counts  map[int32]int32 // tokens generated so far
	scratch []float32
	masked  []float32 // the row with the constraint's disallowed tokens at -inf
	mask    []uint64
	cand    []cand
}

type cand struct {
	id int32
	p  float64
}

// New validates opt and returns a sampler.
func New(opt Options) (*Sampler, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt.LogitBias = maps.Clone(opt.LogitBias) // the caller may reuse its map
	return &Sampler{
		opt:    opt,
		rng:    rand.New(rand.NewPCG(opt.Seed, 0x9e3779b97f4a7c15)),
		counts: map[int32]int32{},
	}, nil
}

// Options returns the sampler's options.
func (s *Sampler) Options() Options { return s.opt }

// SetPrompt records the prompt's tokens for the repetition penalty.
func (s *Sampler) SetPrompt(ids []int32) {
	if s.opt.RepetitionPenalty == 0 || s.opt.RepetitionPenalty == 1 {
		return
	}
	s.prompt = make(map[int32]bool, len(ids))
	for _, id := range ids {
		s.prompt[id] = true
	}
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

// Greedy reports whether the next token is the argmax of the raw logits
// (temperature 0, no penalty, no log-probabilities), so a caller may take
// it from a backend's own argmax (runtime.Argmaxer) and hand it to Accept.
func (s *Sampler) Greedy() bool { return s.opt.Temperature == 0 && s.rawLogits() }

// rawLogits reports whether the next token depends on the row's logits
// alone: no penalty or logit bias rewrites them and no log-probability
// needs the whole row (what Greedy and Candidates both require). A logit
// bias must see the whole row: it may lift a token that a backend's argmax
// or candidate list (cut 30·T below the best) never reports.
func (s *Sampler) rawLogits() bool {
	o := s.opt
	return (o.RepetitionPenalty == 0 || o.RepetitionPenalty == 1) && o.PresencePenalty == 0 && o.FrequencyPenalty == 0 &&
		len(o.LogitBias) == 0 && o.Constraint == nil && !o.Logprobs && o.TopLogprobs == 0
}

// Accept records tok, the argmax of the logits computed elsewhere (only
// valid when Greedy), as generated; a negative tok means the logits held
// no finite maximum and is the error Next would give.
func (s *Sampler) Accept(tok int32) (Result, error) {
	if tok < 0 {
		return Result{}, errNotFinite
	}
	s.counts[tok]++
	return Result{Token: tok}, nil
}

var errNotFinite = fmt.Errorf("sample: logits are not finite")

// Sample picks the next token from logits and records it as generated.
func (s *Sampler) Sample(logits []float32) (int32, error) {
	r, err := s.Next(logits)
	return r.Token, err
}

// Next picks the next token from logits, records it as generated, and
// returns it with the log-probabilities the options ask for.
func (s *Sampler) Next(logits []float32) (Result, error) {
	if len(logits) == 0 {
		return Result{}, fmt.Errorf("sample: empty logits")
	}
	maxv := logits[Argmax(logits)]
	if m := float64(maxv); math.IsNaN(m) || math.IsInf(m, 0) {
		return Result{}, errNotFinite
	}
	if s.opt.Constraint != nil {
		var err error
		if logits, err = s.constrain(logits); err != nil {
			return Result{}, err
		}
	}
	l, err := s.penalized(logits)
	if err != nil {
		return Result{}, err
	}
	var tok int32
	if s.opt.Temperature == 0 {
		tok = Argmax(l)
	} else {
		tok = s.draw(l)
	}
	res := Result{Token: tok}
	if s.opt.Logprobs || s.opt.TopLogprobs > 0 {
		res.Logprob, res.Top = logprobs(logits, tok, s.opt.TopLogprobs)
	}
	if c := s.opt.Constraint; c != nil {
		if err := c.Accept(tok); err != nil {
			return Result{}, err
		}
	}
	s.counts[tok]++
	return res, nil
}

// ErrNoAllowedToken is a constraint that allows no token of the row (or
// none with a finite logit): the constrained output cannot go on.
var ErrNoAllowedToken = fmt.Errorf("sample: the constraint allows no token")

// constrain returns logits with the tokens the constraint disallows at
// -inf; an error when no allowed token has a finite logit.
func (s *Sampler) constrain(logits []float32) ([]float32, error) {
	words := (len(logits) + 63) / 64
	if cap(s.mask) < words {
		s.mask = make([]uint64, words)
	}
	s.mask = s.mask[:words]
	clear(s.mask)
	s.opt.Constraint.Mask(s.mask)
	s.masked = append(s.masked[:0], logits...)
	l := s.masked
	inf := float32(math.Inf(-1))
	finite := false
	for w, bits := range s.mask {
		base := w * 64
		end := min(base+64, len(l))
		if bits == ^uint64(0) && end-base == 64 {
			for _, v := range l[base:end] {
				finite = finite || !math.IsInf(float64(v), -1)
			}
			continue
		}
		for i := base; i < end; i++ {
			if bits&(1<<uint(i-base)) == 0 {
				l[i] = inf
			} else if !math.IsInf(float64(l[i]), -1) {
				finite = true
			}
		}
	}
	if !finite {
		return nil, ErrNoAllowedToken
	}
	return l, nil
}

// penalized returns logits with the penalties, then the logit bias,
// applied (logits itself when none applies); a bias on a token outside
// the row is an error.
func (s *Sampler) penalized(logits []float32) ([]float32, error) {
	rep := s.opt.RepetitionPenalty
	useRep := rep != 0 && rep != 1
	penalize := (useRep || s.opt.PresencePenalty != 0 || s.opt.FrequencyPenalty != 0) && (len(s.counts) > 0 || len(s.prompt) > 0)
	if !penalize && len(s.opt.LogitBias) == 0 {
		return logits, nil
	}
	s.scratch = append(s.scratch[:0], logits...)
	l := s.scratch
	if penalize {
		s.penalize(l, useRep)
	}
	for id, b := range s.opt.LogitBias {
		if int(id) >= len(l) {
			return nil, fmt.Errorf("sample: logit_bias names token %d, outside the vocabulary of %d", id, len(l))
		}
		l[id] += b
	}
	return l, nil
}

// penalize applies the repetition (when useRep), presence and frequency
// penalties to l in place.
func (s *Sampler) penalize(l []float32, useRep bool) {
	rep := s.opt.RepetitionPenalty
	n := int32(len(l))
	if useRep {
		apply := func(id int32) {
			if id >= 0 && id < n {
				if l[id] > 0 {
					l[id] = float32(float64(l[id]) / rep)
				} else {
					l[id] = float32(float64(l[id]) * rep)
				}
			}
		}
		for id := range s.prompt {
			apply(id)
		}
		for id := range s.counts {
			if !s.prompt[id] {
				apply(id)
			}
		}
	}
	for id, c := range s.counts {
		if id >= 0 && id < n {
			l[id] -= float32(s.opt.PresencePenalty + s.opt.FrequencyPenalty*float64(c))
		}
	}
}

// draw samples from softmax(l/T) truncated by top-k, top-p and min-p, in
// that order (transformers' order of warpers).
func (s *Sampler) draw(l []float32) int32 {
	maxv := float64(l[Argmax(l)])
	// Tokens more than 30 nats below the best carry under e^-30 of the
	// mass each; dropping them first keeps sorting cheap on large
	// vocabularies without a visible change in any distribution.
	// Candidates carry z = (logit-max)/T until truncated by top-k (z orders
	// them as their probabilities do), so top-k needs no exp over the
	// vocabulary.
	var c []cand
	if k := s.opt.TopK; k > 0 && k < len(l) {
		c = topK(s.cand[:0], l, k) // one pass, no exp
	} else {
		c = s.within(s.cand[:0], nil, l, maxv)
	}
	s.cand = c
	return s.pick(c, maxv, s.opt.TopK > 0 && s.opt.TopK < len(l))
}

// within appends, in index order, the tokens of vals (whose ids are ids,
// or their indices when ids is nil) with z = (v-maxv)/T >= -30, carrying z.
func (s *Sampler) within(c []cand, ids []int32, vals []float32, maxv float64) []cand {
	t := s.opt.Temperature
	for i, v := range vals {
		if z := (float64(v) - maxv) / t; z >= -30 {
			id := int32(i)
			if ids != nil {
				id = ids[i]
			}
			c = append(c, cand{id, z})
		}
	}
	return c
}

// pick draws from the candidates c: those of within (carrying z, in index
// order) or, when topk, those of topK (carrying the logit, in heap order).
// Top-k candidates are put in index order, so that the draw depends only
// on the set of tokens and their logits, as a draw from a list of
// candidates (NextFromCandidates) sees them.
func (s *Sampler) pick(c []cand, maxv float64, topk bool) int32 {
	truncate := s.opt.TopP > 0 && s.opt.TopP < 1 || s.opt.MinP > 0
	if topk {
		for i := range c {
			c[i].p = (c[i].p - maxv) / s.opt.Temperature
		}
		if !truncate {
			slices.SortFunc(c, func(a, b cand) int { return cmp.Compare(a.id, b.id) })
		}
	}
	if truncate {
		slices.SortFunc(c, byProb)
	}
	for i := range c {
		c[i].p = math.Exp(c[i].p)
	}
	if truncate {
		if p := s.opt.TopP; p > 0 && p < 1 {
			sum := 0.0
			for _, x := range c {
				sum += x.p
			}
			acc, keep := 0.0, len(c)
			for i, x := range c {
				acc += x.p
				if acc >= p*sum {
					keep = i + 1
					break
				}
			}
			c = c[:keep]
		}
		if mp := s.opt.MinP; mp > 0 {
			keep := len(c)
			for i, x := range c {
				if x.p < mp*c[0].p { // c[0].p == 1: the best token
					keep = i
					break
				}
			}
			c = c[:max(keep, 1)]
		}
	}
	sum := 0.0
	for _, x := range c {
		sum += x.p
	}
	r := s.rng.Float64() * sum
	last := c[0].id
	for _, x := range c {
		r -= x.p
		if r < 0 {
			return x.id
		}
		if x.p > 0 {
			last = x.id // rounding left r >= 0: the last token with mass, never a masked one
		}
	}
	return last
}

// candidateMargin widens the offset Candidates asks for beyond 30·T, so
// that a list cut in f32 arithmetic (v - max >= -offset) keeps every token
// draw keeps in f64 ((v-max)/T >= -30): f32 rounding moves v - max by at
// most 2^-24 of itself.
const candidateMargin = 1.0 / 1024

// Candidates reports whether the next token may be drawn from a list of
// candidates (NextFromCandidates) instead of the full logits — sampling at
// a temperature, with no penalty and no log-probabilities — and how far
// below the row's maximum logit the list must reach: every token whose
// logit v has v - max >= -offset in f32 arithmetic (runtime.Candidater).
func (s *Sampler) Candidates() (offset float32, ok bool) {
	o := s.opt
	if o.Temperature <= 0 || !s.rawLogits() {
		return 0, false
	}
	d := float32(30 * o.Temperature * (1 + candidateMargin))
	return math.Nextafter32(d, float32(math.Inf(1))), true
}

// NextFromCandidates is Next given only a row's candidates: ids (strictly
// increasing, in [0, vocab)) and their logits vals, a list holding every
// token of the row whose logit reaches some cut at or below the one
// Candidates asks for (a row holding a NaN has no such list: sample it
// with Next). It picks the token Next would pick from the whole row with
// the same generator state, records it and returns it with ok.
// When the list cannot decide — Candidates says no, top-k asks for more
// tokens than the list holds, or its best logit is not finite — it returns
// ok false and leaves the sampler as it was: the caller then calls Next
// with the full row.
func (s *Sampler) NextFromCandidates(ids []int32, vals []float32, vocab int) (res Result, ok bool, err error) {
	if len(ids) != len(vals) {
		return Result{}, false, fmt.Errorf("sample: %d candidate ids, %d logits", len(ids), len(vals))
	}
	for i, id := range ids {
		if id < 0 || int(id) >= vocab || i > 0 && id <= ids[i-1] {
			return Result{}, false, fmt.Errorf("sample: candidate %d: id %d out of order or outside the vocabulary of %d", i, id, vocab)
		}
	}
	if _, can := s.Candidates(); !can || len(vals) == 0 {
		return Result{}, false, nil
	}
	for _, v := range vals {
		if math.IsNaN(float64(v)) {
			return Result{}, false, nil
		}
	}
	maxv := float64(vals[Argmax(vals)])
	if math.IsInf(maxv, 0) {
		return Result{}, false, nil
	}
	var c []cand
	k := s.opt.TopK
	topk := k > 0 && k < vocab
	if topk {
		if len(vals) < k {
			return Result{}, false, nil // the row's top k reach below the list
		}
		// The list holds every token above its cut and at least k of
		// them, so the row's k best (lowest id first on ties) are the
		// list's k best.
		c = topK(s.cand[:0], vals, k)
		for i := range c {
			c[i].id = ids[c[i].id]
		}
	} else {
		c = s.within(s.cand[:0], ids, vals, maxv)
	}
	s.cand = c
	tok := s.pick(c, maxv, topk)
	s.counts[tok]++
	return Result{Token: tok}, true, nil
}

// logprobs returns log softmax(logits)[tok] and the top n entries.
func logprobs(logits []float32, tok int32, n int) (float32, []TokenLogprob) {
	maxv := float64(logits[Argmax(logits)])
	sum := 0.0
	for _, v := range logits {
		sum += math.Exp(float64(v) - maxv)
	}
	lse := maxv + math.Log(sum)
	lp := func(id int32) float32 { return float32(float64(logits[id]) - lse) }
	var top []TokenLogprob
	if n > 0 {
		n = min(n, len(logits))
		top = make([]TokenLogprob, 0, n+1)
		for i, v := range logits {
			if len(top) == n && v <= logits[top[n-1].Token] || math.IsInf(float64(v), -1) {
				continue // -inf: a token the constraint masks is no alternative
			}
			e := TokenLogprob{Token: int32(i)}
			j, _ := slices.BinarySearchFunc(top, e, func(a, b TokenLogprob) int {
				if logits[a.Token] != logits[b.Token] {
					return cmp.Compare(logits[b.Token], logits[a.Token])
				}
				return cmp.Compare(a.Token, b.Token)
			})
			top = slices.Insert(top, j, e)
			if len(top) > n {
				top = top[:n]
			}
		}
		for i := range top {
			top[i].Logprob = lp(top[i].Token)
		}
	}
	return lp(tok), top
}

// byProb orders candidates most likely first, lower id first on ties.
func byProb(a, b cand) int {
	if a.p != b.p {
		return cmp.Compare(b.p, a.p)
	}
	return cmp.Compare(a.id, b.id)
}

// topK appends the k largest logits (lowest id first on ties) to dst, as
// candidates carrying the logit, in one pass with a min-heap of size k.
func topK(dst []cand, l []float32, k int) []cand {
	h := dst[:0]
	worse := func(a, b cand) bool { return a.p < b.p || a.p == b.p && a.id > b.id } // a ranks below b
	down := func(i int) {
		for {
			m, left, right := i, 2*i+1, 2*i+2
			if left < len(h) && worse(h[left], h[m]) {
				m = left
			}
			if right < len(h) && worse(h[right], h[m]) {
				m = right
			}
			if m == i {
				return
			}
			h[i], h[m] = h[m], h[i]
			i = m
		}
	}
	var floor float32 // h[0]'s logit once the heap is full
	for i, v := range l {
		if len(h) == k && v <= floor {
			continue // ids increase, so a tie ranks below h[0] too
		}
		x := cand{int32(i), float64(v)}
		if len(h) < k {
			h = append(h, x)
			for j := len(h) - 1; j > 0; {
				p := (j - 1) / 2
				if !worse(h[j], h[p]) {
					break
				}
				h[j], h[p] = h[p], h[j]
				j = p
			}
		} else {
			h[0] = x
			down(0)
		}
		floor = float32(h[0].p)
	}
	return h
}
