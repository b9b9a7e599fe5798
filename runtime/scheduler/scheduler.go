// Package scheduler runs many generation requests through one backend
// with continuous batching over the paged KV cache.
//
// Each step packs, under a token budget: one token for every running
// sequence that is decoding, then chunks of prompts still being prefilled,
// then new requests admitted in arrival order while blocks, budget and
// sequence slots last. A new request first takes the cached blocks of its
// longest cached prefix (kvcache prefix caching), so only the rest is
// computed. When a running sequence cannot grow, the most recently
// admitted sequence is preempted: its blocks are released and it goes back
// to the head of the queue with its prompt and the tokens generated so far,
// to be recomputed when blocks free up (its sampler state is kept, so the
// output is as if it had never stopped).
//
// What it is not: it knows no text (stop strings, detokenisation and chat
// templates are the caller's) and no HTTP. One goroutine owns the backend
// and the allocator; the rest of the API is safe for concurrent use.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/sample"
)

// Errors returned by Submit.
var (
	ErrQueueFull = errors.New("scheduler: queue full")
	ErrClosed    = errors.New("scheduler: closed")
	ErrTooLong   = errors.New("scheduler: request does not fit the KV cache")
	ErrInvalid   = errors.New("invalid request")
)

// Config sizes a scheduler. A zero field takes its default.
type Config struct {
	// MaxStepTokens is the per-step token budget; at most the backend's
	// largest step. Default runtime.DefaultMaxStepTokens.
	MaxStepTokens int
	// MaxSeqs is the most sequences in one step; at most the backend's.
	// Default runtime.DefaultMaxSeqs.
	MaxSeqs int
	// MaxQueue is the most requests waiting for admission; Submit returns
	// ErrQueueFull beyond it. Default runtime.DefaultMaxQueue.
	MaxQueue int
	// MaxModelLen caps prompt plus output positions of a sequence.
	// Default: the whole KV pool.
	MaxModelLen int
	// VocabSize, when set, makes Submit reject token ids outside [0, VocabSize).
	VocabSize int
	// NoPrefixCache turns prefix reuse off; set it when PrefixCacheable
	// says the plan cannot reuse cached blocks.
	NoPrefixCache bool
	// MaxCandidates is the most sampling candidates of a row taken from a
	// runtime.Candidater; a row with more is sampled from its logits.
	// Default 4096; negative: always download logits to sample.
	MaxCandidates int
}

// PrefixCacheable reports whether a plan's sequences may start from cached
// prefix blocks: not when the plan keeps per-sequence state (Gated DeltaNet),
// whose value at a block boundary is not stored (docs/design.md).
func PrefixCacheable(p *ir.Plan) bool {
	for _, c := range p.Caches {
		if !c.Kind.Paged() {
			return false
		}
	}
	return true
}

// Request is one generation.
type Request struct {
	Prompt    []int32
	MaxTokens int // tokens to generate at most; >= 1
	Sample    sample.Options
	StopIDs   []int32 // generation ends after one of these is emitted
	// CacheKeys, when set, key the prompt's positions in the prefix cache
	// instead of Prompt (one per prompt token): Qwen3-VL's image tokens
	// are keyed by their image's content (image.Layout.CacheTokens), so
	// cached blocks are shared only between identical images.
	CacheKeys []int32
	// Inputs, when set, supplies the plan's named step inputs
	// (runtime.Batch.Inputs) for this sequence. On a plan with named
	// inputs every request needs it.
	Inputs SeqInputs
}

// SeqInputs supplies one sequence's named step inputs.
type SeqInputs interface {
	// AppendInputs appends to dst, for every named input of the plan, the
	// rows of the sequence's positions [from, from+n); positions from
	// len(Prompt) on are generated tokens (or, after a preemption,
	// recomputed ones). It runs on the scheduler's goroutine, so it may do
	// per-request work lazily (Qwen3-VL's vision stage, skipped when the
	// prefix cache holds every image token). An error ends the request
	// (FinishError) and the step runs without it.
	AppendInputs(dst map[string]runtime.Input, from, n int) error
}

// Finish says why a stream ended.
type Finish string

// Finish reasons.
const (
	FinishStop      Finish = "stop"      // a stop token was emitted (or the caller stopped)
	FinishLength    Finish = "length"    // MaxTokens or MaxModelLen reached
	FinishCancelled Finish = "cancelled" // the request's context ended
	FinishError     Finish = "error"     // the backend failed
)

// Stats are the scheduler's counters and gauges.
type Stats struct {
	Running, Waiting                 int
	FreeBlocks, NumBlocks            int
	CachedBlocks                     int
	Steps, Preemptions               int64
	PromptTokens                     int64 // prompt positions submitted
	PrefillTokens                    int64 // prompt positions computed (recomputation included)
	CachedTokens                     int64 // prompt positions taken from the prefix cache
	GeneratedTokens                  int64
	PrefixQueried, PrefixHit         int64 // positions looked up in / found in the prefix cache
	RequestsFinished, RequestsFailed int64
	// FromCandidates counts the tokens drawn from a backend's candidate
	// lists (runtime.Candidater), FromArgmax those a backend's argmax gave
	// (runtime.Argmaxer, steps whose sampling rows are all greedy), and
	// FromLogits those drawn from downloaded logits.
	FromCandidates, FromArgmax, FromLogits int64
}

// Scheduler drives a backend. Create with New, stop with Close.
type Scheduler struct {
	be    runtime.Backend
	alloc *kvcache.Allocator
	cfg   Config

	mu       sync.Mutex
	incoming []*seq
	queued   int // incoming + waiting, for MaxQueue
	closed   bool
	wake     chan struct{}
	done     chan struct{}
	statsMu  sync.Mutex
	stats    Stats

	// Owned by the loop.
	waiting []*seq
	running []*seq
	slots   []int32
	batch   runtime.Batch
	nextID  uint64
	plan    []planned
	counter Stats
	offsets []float32 // each row's candidates offset (results)
}

type planned struct {
	s *seq
	n int
}

type seq struct {
	id       uint64
	ctx      context.Context
	stopCtx  func() bool
	req      Request
	stream   *Stream
	smp      *sample.Sampler
	tokens   []int32 // prompt, then generated
	keys     []int32 // prefix-cache keys of tokens (Request.CacheKeys, then generated)
	computed int     // positions in the cache
	kv       kvcache.Sequence
	slot     int32
	admitted bool
}

// New returns a running scheduler over be, whose caches have alloc's
// geometry. The scheduler owns be and alloc until Close.
func New(be runtime.Backend, alloc *kvcache.Allocator, cfg Config) (*Scheduler, error) {
	if cfg.MaxStepTokens < 0 || cfg.MaxSeqs < 0 || cfg.MaxQueue < 0 || cfg.MaxModelLen < 0 || cfg.VocabSize < 0 {
		return nil, fmt.Errorf("scheduler: negative field in %+v", cfg)
	}
	if cfg.MaxStepTokens == 0 {
		cfg.MaxStepTokens = runtime.DefaultMaxStepTokens
	}
	if cfg.MaxSeqs == 0 {
		cfg.MaxSeqs = runtime.DefaultMaxSeqs
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = runtime.DefaultMaxQueue
	}
	if cfg.MaxCandidates == 0 {
		cfg.MaxCandidates = 4096
	}
	if pool := alloc.NumBlocks() * alloc.BlockSize(); cfg.MaxModelLen == 0 || cfg.MaxModelLen > pool {
		cfg.MaxModelLen = pool
	}
	s := &Scheduler{be: be, alloc: alloc, cfg: cfg, wake: make(chan struct{}, 1), done: make(chan struct{})}
	for i := cfg.MaxSeqs - 1; i >= 0; i-- {
		s.slots = append(s.slots, int32(i))
	}
	s.publish()
	go s.loop()
	return s, nil
}

// Config returns the scheduler's configuration with defaults filled in.
func (s *Scheduler) Config() Config { return s.cfg }

// Stats returns a snapshot of the counters.
func (s *Scheduler) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return s.stats
}

// Submit queues req. The stream ends when generation stops, when ctx ends
// (the sequence is dropped and its blocks freed) or when the scheduler
// closes.
func (s *Scheduler) Submit(ctx context.Context, req Request) (*Stream, error) {
	if len(req.Prompt) == 0 {
		return nil, fmt.Errorf("%w: empty prompt", ErrInvalid)
	}
	if req.MaxTokens < 1 {
		return nil, fmt.Errorf("%w: max tokens must be >= 1, got %d", ErrInvalid, req.MaxTokens)
	}
	if s.cfg.VocabSize > 0 {
		for _, t := range req.Prompt {
			if t < 0 || int(t) >= s.cfg.VocabSize {
				return nil, fmt.Errorf("%w: prompt token %d outside the vocabulary [0, %d)", ErrInvalid, t, s.cfg.VocabSize)
			}
		}
	}
	if n := len(req.Prompt) + 1; n > s.cfg.MaxModelLen {
		return nil, fmt.Errorf("%w: prompt of %d tokens, room for %d positions", ErrTooLong, len(req.Prompt), s.cfg.MaxModelLen)
	}
	if s.cfg.VocabSize > 0 {
		for id := range req.Sample.LogitBias {
			if int(id) >= s.cfg.VocabSize {
				return nil, fmt.Errorf("%w: logit_bias names token %d, outside the vocabulary [0, %d)", ErrInvalid, id, s.cfg.VocabSize)
			}
		}
	}
	smp, err := sample.New(req.Sample)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if req.CacheKeys != nil && len(req.CacheKeys) != len(req.Prompt) {
		return nil, fmt.Errorf("%w: %d cache keys for %d prompt tokens", ErrInvalid, len(req.CacheKeys), len(req.Prompt))
	}
	smp.SetPrompt(req.Prompt)
	q := &seq{ctx: ctx, req: req, smp: smp, tokens: slices.Clip(slices.Clone(req.Prompt)), slot: -1}
	q.keys = q.tokens
	if req.CacheKeys != nil {
		q.keys = slices.Clip(slices.Clone(req.CacheKeys))
	}
	q.stream = &Stream{notify: make(chan struct{}, 1), PromptTokens: len(req.Prompt)}
	q.stopCtx = context.AfterFunc(ctx, s.kick)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		q.stopCtx()
		return nil, ErrClosed
	}
	if s.queued >= s.cfg.MaxQueue {
		s.mu.Unlock()
		q.stopCtx()
		return nil, fmt.Errorf("%w: %d requests waiting", ErrQueueFull, s.cfg.MaxQueue)
	}
	s.queued++
	s.incoming = append(s.incoming, q)
	s.mu.Unlock()
	s.kick()
	return q.stream, nil
}

func (s *Scheduler) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close ends every stream still open (FinishCancelled), stops the loop and
// waits for it. The backend is not closed.
func (s *Scheduler) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
	}
	s.mu.Unlock()
	s.kick()
	<-s.done
}

func (s *Scheduler) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		closed := s.closed
		s.waiting = append(s.waiting, s.incoming...)
		s.incoming = s.incoming[:0]
		s.mu.Unlock()
		if closed {
			for _, q := range slices.Concat(s.running, s.waiting) {
				s.finish(q, FinishCancelled, ErrClosed)
			}
			s.running, s.waiting = nil, nil
			s.publish()
			return
		}
		s.dropCancelled()
		if len(s.running) == 0 && len(s.waiting) == 0 {
			s.publish()
			<-s.wake
			continue
		}
		s.step()
		s.publish()
	}
}

func (s *Scheduler) dropCancelled() {
	keep := func(list []*seq) []*seq {
		out := list[:0]
		for _, q := range list {
			if q.ctx.Err() != nil {
				s.finish(q, FinishCancelled, q.ctx.Err())
				continue
			}
			out = append(out, q)
		}
		clear(list[len(out):])
		return out
	}
	s.running = keep(s.running)
	s.waiting = keep(s.waiting)
}

// finish ends q's stream and releases its blocks and slot.
func (s *Scheduler) finish(q *seq, why Finish, err error) {
	s.alloc.Free(&q.kv)
	if q.slot >= 0 {
		s.slots = append(s.slots, q.slot)
		q.slot = -1
	}
	if !q.admitted {
		s.mu.Lock()
		s.queued--
		s.mu.Unlock()
		q.admitted = true // counted once
	}
	if q.stopCtx != nil {
		q.stopCtx()
	}
	if why == FinishError {
		s.counter.RequestsFailed++
	} else {
		s.counter.RequestsFinished++
	}
	q.stream.end(why, err)
}

// preempt releases q's blocks and puts it back at the head of the queue.
func (s *Scheduler) preempt(q *seq) {
	s.alloc.Free(&q.kv)
	q.computed = 0
	s.slots = append(s.slots, q.slot)
	q.slot = -1
	s.waiting = slices.Insert(s.waiting, 0, q)
	s.counter.Preemptions++
}

func (s *Scheduler) step() {
	budget := s.cfg.MaxStepTokens
	s.plan = s.plan[:0]
	preempted := false
	// Running sequences: decodes (one token) first, then prefill chunks.
	for pass := 0; pass < 2; pass++ {
		for i := 0; i < len(s.running) && budget > 0; i++ {
			q := s.running[i]
			need := len(q.tokens) - q.computed
			if (pass == 0) != (need == 1) || s.inPlan(q) {
				continue
			}
			n := min(need, budget)
			for s.alloc.Grow(&q.kv, q.computed+n) != nil {
				victim := s.running[len(s.running)-1]
				s.running = s.running[:len(s.running)-1]
				if j := s.planIndex(victim); j >= 0 {
					budget += s.plan[j].n
					s.plan = slices.Delete(s.plan, j, j+1)
				}
				s.preempt(victim)
				preempted = true
				if victim == q {
					n = 0
					break
				}
			}
			if n == 0 {
				break
			}
			s.plan = append(s.plan, planned{q, n})
			budget -= n
		}
	}
	// Admission, in arrival order, while everything fits.
	for !preempted && budget > 0 && len(s.waiting) > 0 && len(s.running) < s.cfg.MaxSeqs {
		q := s.waiting[0]
		shared := 0
		if len(q.kv.Blocks) == 0 && !s.cfg.NoPrefixCache {
			shared = s.alloc.Share(&q.kv, q.keys, len(q.keys)-1)
			q.computed = shared
		}
		n := min(len(q.tokens)-q.computed, budget)
		if s.alloc.Grow(&q.kv, q.computed+n) != nil {
			// Hand shared blocks back so that they stay evictable.
			s.alloc.Free(&q.kv)
			q.computed = 0
			break
		}
		s.waiting = s.waiting[1:]
		if !q.admitted {
			s.counter.PromptTokens += int64(len(q.req.Prompt))
			s.counter.CachedTokens += int64(shared)
			q.stream.mu.Lock()
			q.stream.cached = shared
			q.stream.mu.Unlock()
			q.admitted = true
			s.mu.Lock()
			s.queued--
			s.mu.Unlock()
		}
		q.slot = s.slots[len(s.slots)-1]
		s.slots = s.slots[:len(s.slots)-1]
		s.running = append(s.running, q)
		s.plan = append(s.plan, planned{q, n})
		budget -= n
	}
	if len(s.plan) == 0 {
		if len(s.running) == 0 && len(s.waiting) > 0 {
			// Nothing runs and the head cannot be admitted alone: it can
			// never run.
			q := s.waiting[0]
			s.waiting = s.waiting[1:]
			s.finish(q, FinishError, fmt.Errorf("%w: %d positions needed, %d blocks of %d free",
				ErrTooLong, len(q.tokens), s.alloc.FreeBlocks(), s.alloc.BlockSize()))
		}
		return
	}
	s.run()
}

func (s *Scheduler) inPlan(q *seq) bool { return s.planIndex(q) >= 0 }

func (s *Scheduler) planIndex(q *seq) int {
	for j, p := range s.plan {
		if p.s == q {
			return j
		}
	}
	return -1
}

// run executes the planned step and hands out its tokens.
func (s *Scheduler) run() {
	b := &s.batch
	b.Tokens, b.Positions, b.SeqOfToken = b.Tokens[:0], b.Positions[:0], b.SeqOfToken[:0]
	b.Seqs, b.LogitRows = b.Seqs[:0], b.LogitRows[:0]
	for k, v := range b.Inputs {
		b.Inputs[k] = runtime.Input{F32: v.F32[:0], I32: v.I32[:0]}
	}
	failed := false
	for _, p := range s.plan {
		q := p.s
		if q.req.Inputs == nil {
			continue
		}
		if b.Inputs == nil {
			b.Inputs = map[string]runtime.Input{}
		}
		if err := q.req.Inputs.AppendInputs(b.Inputs, q.computed, p.n); err != nil {
			s.remove(q)
			s.finish(q, FinishError, err)
			failed = true
		}
	}
	if failed {
		return // the others run in the next step
	}
	for j, p := range s.plan {
		q := p.s
		b.Tokens = append(b.Tokens, q.tokens[q.computed:q.computed+p.n]...)
		for i := 0; i < p.n; i++ {
			b.Positions = append(b.Positions, int32(q.computed+i))
			b.SeqOfToken = append(b.SeqOfToken, int32(j))
		}
		b.Seqs = append(b.Seqs, runtime.SeqView{Blocks: q.kv.Blocks, Slot: q.slot})
		b.LogitRows = append(b.LogitRows, int32(len(b.Tokens)-1))
	}
	s.counter.Steps++
	err := s.be.Step(b)
	var out results
	if err == nil {
		out, err = s.results()
	}
	if err != nil {
		for _, p := range s.plan {
			s.remove(p.s)
			s.finish(p.s, FinishError, err)
		}
		return
	}
	for j, p := range s.plan {
		q := p.s
		if q.computed < len(q.req.Prompt) {
			s.counter.PrefillTokens += int64(min(p.n, len(q.req.Prompt)-q.computed))
		}
		q.computed += p.n
		s.alloc.Commit(&q.kv, q.keys)
		if q.computed < len(q.tokens) {
			continue // a prefill chunk
		}
		if q.ctx.Err() != nil {
			s.remove(q)
			s.finish(q, FinishCancelled, q.ctx.Err())
			continue
		}
		res, err := s.sample(q, j, &out)
		if err != nil {
			s.remove(q)
			s.finish(q, FinishError, err)
			continue
		}
		if q.req.CacheKeys != nil {
			q.keys = append(q.keys, res.Token)
		}
		q.tokens = append(q.tokens, res.Token)
		if q.req.CacheKeys == nil {
			q.keys = q.tokens
		}
		s.counter.GeneratedTokens++
		q.stream.push(res)
		gen := len(q.tokens) - len(q.req.Prompt)
		switch {
		case slices.Contains(q.req.StopIDs, res.Token):
			s.remove(q)
			s.finish(q, FinishStop, nil)
		case q.req.Sample.Constraint != nil && q.req.Sample.Constraint.Done():
			// The constrained output is complete (structured output): nothing may follow.
			s.remove(q)
			s.finish(q, FinishStop, nil)
		case gen >= q.req.MaxTokens || len(q.tokens) >= s.cfg.MaxModelLen:
			s.remove(q)
			s.finish(q, FinishLength, nil)
		}
	}
}

// results is what a step's sampled rows are drawn from: the backend's
// argmax of each row (ids), its candidates (cands), or the logits, which
// are also fetched on demand for a row its candidates cannot decide.
type results struct {
	ids    []int32
	cands  []runtime.Candidates
	logits []float32
	vocab  int
}

// results fetches what the step's sampled rows need: nothing when every
// row was a prefill chunk; the backend's argmax when it offers one and every
// sampled row is greedy (runtime.Argmaxer: S int32s instead of S·vocab
// logits); each row's sampling candidates when it offers them and every
// sampled row is greedy or samples without penalties and log-probabilities
// (runtime.Candidater: the tokens within 30 nats of the best); else the
// logits. A row with a logit bias is neither greedy nor a candidates row
// (sample.Sampler.Greedy, Candidates): the bias may lift a token neither
// reports, so its step downloads the logits; so is a row with a constraint
// (structured output), whose mask may exclude every token they report.
func (s *Scheduler) results() (results, error) {
	sampled, greedy, cand := false, true, s.cfg.MaxCandidates > 0
	s.offsets = s.offsets[:0]
	for _, p := range s.plan {
		var off float32 // greedy rows and prefill chunks: the ties at the best
		if p.s.computed+p.n >= len(p.s.tokens) {
			sampled = true
			if !p.s.smp.Greedy() {
				greedy = false
				o, ok := p.s.smp.Candidates()
				cand = cand && ok
				off = o
			}
		}
		s.offsets = append(s.offsets, off)
	}
	if !sampled {
		return results{}, nil
	}
	if am, ok := s.be.(runtime.Argmaxer); ok && greedy {
		ids, err := am.Argmax()
		if err == nil && len(ids) != len(s.plan) {
			err = fmt.Errorf("scheduler: argmax of %d rows for %d sequences", len(ids), len(s.plan))
		}
		return results{ids: ids}, err
	}
	if cd, ok := s.be.(runtime.Candidater); ok && cand {
		rows, vocab, err := cd.Candidates(s.offsets, s.cfg.MaxCandidates)
		if err == nil && len(rows) != len(s.plan) {
			err = fmt.Errorf("scheduler: candidates of %d rows for %d sequences", len(rows), len(s.plan))
		}
		return results{cands: rows, vocab: vocab}, err
	}
	var r results
	return r, s.fetchLogits(&r)
}

// fetchLogits downloads the step's logits into r.
func (s *Scheduler) fetchLogits(r *results) error {
	logits, shape, err := s.be.Output("logits")
	if err == nil && (len(shape) != 2 || shape[0] != len(s.plan)) {
		err = fmt.Errorf("scheduler: logits shape %v for %d sequences", shape, len(s.plan))
	}
	if err != nil {
		return err
	}
	r.logits, r.vocab = logits, shape[1]
	return nil
}

// sample draws q's next token from row j of the step's results.
func (s *Scheduler) sample(q *seq, j int, r *results) (sample.Result, error) {
	if r.ids != nil {
		s.counter.FromArgmax++
		return q.smp.Accept(r.ids[j])
	}
	if r.cands != nil && !r.cands[j].Full {
		c := r.cands[j]
		if q.smp.Greedy() {
			// The row's first maximum: its lowest id, as Next's argmax.
			if i := sample.Argmax(c.Vals); len(c.Vals) > 0 && c.Vals[i] == c.Max {
				s.counter.FromCandidates++
				return q.smp.Accept(c.IDs[i])
			}
		} else {
			res, ok, err := q.smp.NextFromCandidates(c.IDs, c.Vals, r.vocab)
			if ok {
				s.counter.FromCandidates++
			}
			if ok || err != nil {
				return res, err
			}
		}
	}
	if r.logits == nil {
		if err := s.fetchLogits(r); err != nil {
			return sample.Result{}, err
		}
	}
	s.counter.FromLogits++
	return q.smp.Next(r.logits[j*r.vocab : (j+1)*r.vocab])
}

func (s *Scheduler) remove(q *seq) {
	if i := slices.Index(s.running, q); i >= 0 {
		s.running = slices.Delete(s.running, i, i+1)
	}
}

func (s *Scheduler) publish() {
	st := s.counter
	st.Running, st.Waiting = len(s.running), len(s.waiting)
	st.FreeBlocks, st.NumBlocks, st.CachedBlocks = s.alloc.FreeBlocks(), s.alloc.NumBlocks(), s.alloc.CachedBlocks()
	ps := s.alloc.Stats()
	st.PrefixQueried, st.PrefixHit = ps.Queried, ps.Hit
	s.statsMu.Lock()
	s.stats = st
	s.statsMu.Unlock()
}

// Stream delivers one request's tokens. Its methods are safe for
// concurrent use with the scheduler.
type Stream struct {
	// PromptTokens is the prompt's length.
	PromptTokens int

	mu     sync.Mutex
	toks   []sample.Result
	ended  bool
	cached int
	finish Finish
	err    error
	notify chan struct{}
}

func (st *Stream) push(r sample.Result) {
	st.mu.Lock()
	st.toks = append(st.toks, r)
	st.mu.Unlock()
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

func (st *Stream) end(why Finish, err error) {
	st.mu.Lock()
	st.ended, st.finish, st.err = true, why, err
	st.mu.Unlock()
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

// Next returns the tokens generated since the last call, waiting for at
// least one. When the stream has ended and every token was returned, it
// returns done = true with the reason and the error (nil unless
// FinishError or FinishCancelled). If ctx ends first it returns ctx's
// error.
func (st *Stream) Next(ctx context.Context, buf []sample.Result) (toks []sample.Result, done bool, why Finish, err error) {
	for {
		st.mu.Lock()
		if len(st.toks) > 0 {
			toks = append(buf[:0], st.toks...)
			st.toks = st.toks[:0]
			st.mu.Unlock()
			return toks, false, "", nil
		}
		if st.ended {
			st.mu.Unlock()
			return nil, true, st.finish, st.err
		}
		st.mu.Unlock()
		select {
		case <-st.notify:
		case <-ctx.Done():
			return nil, true, FinishCancelled, ctx.Err()
		}
	}
}

// CachedTokens returns how many prompt positions the prefix cache served
// when the request was admitted.
func (st *Stream) CachedTokens() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cached
}
