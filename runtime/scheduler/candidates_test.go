package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/sample"
)

// spreadBackend is the fake model with logits spread below its next token
// (two tokens per logit step, so ties are everywhere): sampling at a
// temperature draws among the tokens near it. It only offers Output.
type spreadBackend struct {
	*fakeBackend
	outputs int
}

func (f *spreadBackend) Step(b *runtime.Batch) error {
	if err := f.fakeBackend.Step(b); err != nil {
		return err
	}
	for j := 0; j < f.s; j++ {
		row := f.logits[j*vocab : (j+1)*vocab]
		hot := int(sample.Argmax(row))
		for i := range row {
			row[i] = 5 - float32((i-hot+vocab)%vocab/2)
		}
	}
	return nil
}

func (f *spreadBackend) Output(name string) ([]float32, []int, error) {
	f.outputs++
	return f.fakeBackend.Output(name)
}

// candBackend also offers the backend-side argmax and candidates, computed
// as the CUDA kernels do, and counts how each step's results were fetched.
type candBackend struct {
	spreadBackend
	argmaxes, cands int
	rows            []runtime.Candidates
}

func (f *candBackend) Argmax() ([]int32, error) {
	f.argmaxes++
	ids := make([]int32, f.s)
	for j := range ids {
		ids[j] = sample.Argmax(f.logits[j*vocab : (j+1)*vocab])
	}
	return ids, nil
}

func (f *candBackend) Candidates(offsets []float32, limit int) ([]runtime.Candidates, int, error) {
	if len(offsets) != f.s {
		return nil, 0, fmt.Errorf("fake: %d offsets for %d rows", len(offsets), f.s)
	}
	f.cands++
	f.rows = f.rows[:0]
	for j := 0; j < f.s; j++ {
		row := f.logits[j*vocab : (j+1)*vocab]
		c := runtime.Candidates{Max: row[sample.Argmax(row)]}
		for i, v := range row {
			if v-c.Max >= -offsets[j] {
				c.IDs = append(c.IDs, int32(i))
				c.Vals = append(c.Vals, v)
			}
		}
		if len(c.IDs) > limit {
			c = runtime.Candidates{Max: c.Max, Full: true}
		}
		f.rows = append(f.rows, c)
	}
	return f.rows, vocab, nil
}

// serveAll runs every request at once and returns each one's tokens and
// the scheduler's counters.
func serveAll(t *testing.T, be runtime.Backend, cfg Config, reqs []Request) ([][]int32, Stats) {
	t.Helper()
	s, err := New(be, kvcache.NewAllocator(128, 4), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := make([][]int32, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		st, err := s.Submit(context.Background(), r)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, why, err := collect(t, st)
			if err != nil || why != FinishLength {
				t.Errorf("request %d: finish %q, err %v", i, why, err)
			}
			out[i] = got
		}()
	}
	wg.Wait()
	s.Close() // publishes the last step's counts, which may land after the streams end
	return out, s.Stats()
}

// TestBackendCandidates: seeded sampling requests (top-p, min-p, top-k,
// mixed with greedy ones in the same steps) served from a backend's
// candidates give exactly the tokens served from the full logits, without
// downloading logits; a top-k beyond the candidates, a request for
// log-probabilities and rows with more candidates than MaxCandidates fall
// back to the logits, with the same tokens.
func TestBackendCandidates(t *testing.T) {
	cfg := Config{MaxStepTokens: 16, MaxSeqs: 4}
	newCand := func() *candBackend {
		return &candBackend{spreadBackend: spreadBackend{fakeBackend: newFake(128, 4, cfg.MaxStepTokens, cfg.MaxSeqs)}}
	}
	req := func(n int, base int32, o sample.Options) Request {
		return Request{Prompt: prompt(n, base), MaxTokens: 12, Sample: o}
	}
	listed := []Request{
		req(9, 1, sample.Options{Temperature: 0.8, TopP: 0.9, Seed: 1}),
		req(5, 2, sample.Options{Temperature: 1.3, MinP: 0.05, Seed: 2}),
		req(13, 3, sample.Options{}),
		req(7, 4, sample.Options{Temperature: 1, TopK: 5, Seed: 4}),
		req(3, 5, sample.Options{Temperature: 2, Seed: 5}),
		req(6, 6, sample.Options{Temperature: 0.5, TopK: 3, TopP: 0.8, Seed: 6}),
	}
	full := &spreadBackend{fakeBackend: newFake(128, 4, cfg.MaxStepTokens, cfg.MaxSeqs)}
	want, wantSt := serveAll(t, full, cfg, listed)
	f := newCand()
	got, st := serveAll(t, f, cfg, listed)
	// A step whose sampling rows are all greedy (the greedy request alone,
	// as scheduling may leave it) takes the backend's argmax instead.
	if n := st.GeneratedTokens; st.FromCandidates+st.FromArgmax != n || st.FromCandidates == 0 || st.FromLogits != 0 || wantSt.FromLogits != n || wantSt.FromCandidates != 0 {
		t.Errorf("%d tokens: %d from candidates, %d from argmax and %d from logits; %d and %d without a Candidater",
			n, st.FromCandidates, st.FromArgmax, st.FromLogits, wantSt.FromCandidates, wantSt.FromLogits)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("request %d (%+v): from candidates %v, from logits %v", i, listed[i].Sample, got[i], want[i])
		}
	}
	if f.outputs != 0 || f.cands == 0 {
		t.Errorf("%d logits downloads and %d candidate lists; want none and some", f.outputs, f.cands)
	}
	sampled := 0
	for i, r := range listed {
		if !slices.Equal(got[i], reference(r.Prompt, r.MaxTokens)) {
			sampled++
		}
	}
	if sampled < 4 {
		t.Errorf("only %d of %d requests drew anything but the greedy tokens: the test samples too little", sampled, len(listed))
	}

	for _, c := range []struct {
		name string
		req  Request
		max  int
	}{
		{"top-k beyond the list", req(8, 7, sample.Options{Temperature: 0.3, TopK: 40, Seed: 7}), 0},
		{"logprobs", req(8, 8, sample.Options{Temperature: 1, Seed: 8, Logprobs: true}), 0},
		{"more than MaxCandidates", req(8, 9, sample.Options{Temperature: 1, Seed: 9}), 6},
	} {
		ccfg := cfg
		ccfg.MaxCandidates = c.max
		reqs := []Request{c.req, listed[0]}
		want, _ := serveAll(t, &spreadBackend{fakeBackend: newFake(128, 4, cfg.MaxStepTokens, cfg.MaxSeqs)}, ccfg, reqs)
		f := newCand()
		got, st := serveAll(t, f, ccfg, reqs)
		if st.FromLogits == 0 || st.FromCandidates+st.FromLogits != st.GeneratedTokens {
			t.Errorf("%s: %d tokens from candidates, %d from logits, of %d", c.name, st.FromCandidates, st.FromLogits, st.GeneratedTokens)
		}
		if !slices.EqualFunc(got, want, slices.Equal) {
			t.Errorf("%s: from a Candidater %v, from logits %v", c.name, got, want)
		}
		if f.outputs == 0 {
			t.Errorf("%s: never downloaded logits", c.name)
		}
	}

	// Greedy requests alone still take the argmax.
	f = newCand()
	serveAll(t, f, cfg, []Request{listed[2]})
	if f.argmaxes == 0 || f.cands != 0 || f.outputs != 0 {
		t.Errorf("greedy only: %d argmaxes, %d candidate lists, %d logits downloads", f.argmaxes, f.cands, f.outputs)
	}
}

// TestLogitBiasTakesLogits: a request with a logit bias, greedy or
// sampled, never takes a backend's argmax or candidates — the bias lifts a
// token from far below the best, which neither reports — and its tokens
// show the bias; a bias outside the vocabulary is refused at Submit.
func TestLogitBiasTakesLogits(t *testing.T) {
	cfg := Config{MaxStepTokens: 16, MaxSeqs: 4, VocabSize: vocab}
	const forced = 40
	// The spread model puts token forced ~20 logits below the best at most
	// steps: outside any temperature-0.5 candidate list.
	bias := map[int32]float32{forced: 100}
	for _, c := range []struct {
		name string
		opt  sample.Options
	}{
		{"greedy", sample.Options{LogitBias: bias}},
		{"sampled", sample.Options{Temperature: 0.5, Seed: 3, LogitBias: bias}},
	} {
		f := &candBackend{spreadBackend: spreadBackend{fakeBackend: newFake(128, 4, cfg.MaxStepTokens, cfg.MaxSeqs)}}
		s, err := New(f, kvcache.NewAllocator(128, 4), cfg)
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.Submit(context.Background(), Request{Prompt: prompt(9, 1), MaxTokens: 6, Sample: c.opt})
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := collect(t, st)
		s.Close() // publishes the last step's counts, which may land after the stream ends
		stats := s.Stats()
		if err != nil || !slices.Equal(got, slices.Repeat([]int32{forced}, 6)) {
			t.Errorf("%s: %v %v, want token %d six times", c.name, got, err, forced)
		}
		if f.argmaxes != 0 || f.cands != 0 || stats.FromLogits != 6 || stats.FromCandidates != 0 {
			t.Errorf("%s: %d argmaxes, %d candidate lists, %d tokens from logits; want 0, 0, 6", c.name, f.argmaxes, f.cands, stats.FromLogits)
		}
	}
	s, _, _ := newSched(t, 8, 4, cfg)
	r := Request{Prompt: []int32{1}, MaxTokens: 1, Sample: sample.Options{LogitBias: map[int32]float32{vocab: -1}}}
	if _, err := s.Submit(context.Background(), r); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "logit_bias") {
		t.Errorf("bias on token %d: %v, want ErrInvalid naming logit_bias", vocab, err)
	}
}
