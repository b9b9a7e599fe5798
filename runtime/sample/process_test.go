package sample

import (
	"math"
	"slices"
	"testing"
)

// drawn returns the set of tokens drawn over many samples.
func drawn(t *testing.T, opt Options, logits []float32, n int) map[int32]int {
	t.Helper()
	s, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int32]int{}
	for i := 0; i < n; i++ {
		tok, err := s.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		got[tok]++
		s.counts = map[int32]int32{} // no penalties: keep draws independent
	}
	return got
}

func TestTruncation(t *testing.T) {
	// p ∝ 8, 4, 2, 1, 1 at temperature 1.
	logits := []float32{0, float32(math.Log(2)), float32(math.Log(4)), float32(math.Log(8)), 0}
	for _, tc := range []struct {
		name string
		opt  Options
		want []int32 // exactly these tokens appear
	}{
		{"all", Options{Temperature: 1}, []int32{0, 1, 2, 3, 4}},
		{"top_k=2", Options{Temperature: 1, TopK: 2}, []int32{3, 2}},
		{"top_p=0.5", Options{Temperature: 1, TopP: 0.5}, []int32{3}},
		{"top_p=0.7", Options{Temperature: 1, TopP: 0.7}, []int32{3, 2}},
		{"min_p=0.2", Options{Temperature: 1, MinP: 0.2}, []int32{3, 2, 1}},
		{"top_k=3,min_p=0.4", Options{Temperature: 1, TopK: 3, MinP: 0.4}, []int32{3, 2}},
	} {
		got := drawn(t, tc.opt, logits, 3000)
		if len(got) != len(tc.want) {
			t.Errorf("%s: drew %v, want exactly %v", tc.name, got, tc.want)
			continue
		}
		for _, w := range tc.want {
			if got[w] == 0 {
				t.Errorf("%s: drew %v, want exactly %v", tc.name, got, tc.want)
			}
		}
	}
}

func TestSeedReproducible(t *testing.T) {
	logits := make([]float32, 100)
	for i := range logits {
		logits[i] = float32(i%7) * 0.3
	}
	run := func(seed uint64) []int32 {
		s, _ := New(Options{Temperature: 0.9, TopP: 0.95, Seed: seed})
		var out []int32
		for i := 0; i < 50; i++ {
			tok, _ := s.Sample(logits)
			out = append(out, tok)
		}
		return out
	}
	a, b, c := run(3), run(3), run(4)
	if !equal(a, b) {
		t.Errorf("same seed, different draws:\n%v\n%v", a, b)
	}
	if equal(a, c) {
		t.Errorf("seeds 3 and 4 drew the same 50 tokens")
	}
}

func equal(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPenaltiesGreedy(t *testing.T) {
	logits := []float32{2, 1.5, 1, -1}
	// Presence 1.2: each token drawn drops below the next.
	s, _ := New(Options{PresencePenalty: 1.2})
	seq := []int32{}
	for i := 0; i < 3; i++ {
		tok, _ := s.Sample(logits)
		seq = append(seq, tok)
	}
	if want := []int32{0, 1, 2}; !equal(seq, want) {
		t.Errorf("presence 1.2: %v, want %v", seq, want)
	}
	// Frequency 0.3: token 0 repeats until 2-0.3k < 1.5.
	s, _ = New(Options{FrequencyPenalty: 0.3})
	seq = seq[:0]
	for i := 0; i < 4; i++ {
		tok, _ := s.Sample(logits)
		seq = append(seq, tok)
	}
	if want := []int32{0, 0, 1, 0}; !equal(seq, want) {
		t.Errorf("frequency 0.3: %v, want %v", seq, want)
	}
	// Repetition 2 on the prompt's token 0: 2/2 = 1 < 1.5.
	s, _ = New(Options{RepetitionPenalty: 2})
	s.SetPrompt([]int32{0, 3})
	if tok, _ := s.Sample(logits); tok != 1 {
		t.Errorf("repetition 2: got %d, want 1", tok)
	}
	// The penalties never change the caller's logits.
	if logits[0] != 2 {
		t.Errorf("logits modified: %v", logits)
	}
}

// TestLogitBias: the bias moves greedy and sampled choices (-100 bans a
// token, +100 forces one), comes after the penalties, leaves the caller's
// logits and the reported log-probabilities (the model's) alone, and is
// validated.
func TestLogitBias(t *testing.T) {
	logits := []float32{2, 1.5, 1, -1}
	pick := func(opt Options, prompt []int32) int32 {
		t.Helper()
		s, err := New(opt)
		if err != nil {
			t.Fatal(err)
		}
		s.SetPrompt(prompt)
		tok, err := s.Sample(logits)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, c := range []struct {
		bias map[int32]float32
		want int32
	}{
		{nil, 0},
		{map[int32]float32{0: -100}, 1},
		{map[int32]float32{0: -100, 1: -0.6}, 2},
		{map[int32]float32{3: 100}, 3},
		{map[int32]float32{2: 1.01}, 2},
	} {
		if got := pick(Options{LogitBias: c.bias}, nil); got != c.want {
			t.Errorf("greedy, bias %v: token %d, want %d", c.bias, got, c.want)
		}
	}
	// Repetition penalty 2 on token 3 first (-1 → -2), then +4.5: 2.5 beats
	// token 0's 2. Biasing first would give 3.5/2 = 1.75, below it.
	if got := pick(Options{RepetitionPenalty: 2, LogitBias: map[int32]float32{3: 4.5}}, []int32{3}); got != 3 {
		t.Errorf("penalty then bias: token %d, want 3", got)
	}
	if logits[0] != 2 || logits[3] != -1 {
		t.Errorf("logits modified: %v", logits)
	}
	banned := drawn(t, Options{Temperature: 1.5, Seed: 3, LogitBias: map[int32]float32{0: -100}}, logits, 2000)
	if banned[0] != 0 || len(banned) < 3 {
		t.Errorf("sampling with token 0 banned drew %v", banned)
	}
	forced := drawn(t, Options{Temperature: 1.5, Seed: 3, LogitBias: map[int32]float32{3: 100}}, logits, 2000)
	if forced[3] != 2000 {
		t.Errorf("sampling with token 3 forced drew %v", forced)
	}
	s, _ := New(Options{Logprobs: true, LogitBias: map[int32]float32{3: 100}})
	r, err := s.Next(logits)
	lse := math.Log(math.Exp(2) + math.Exp(1.5) + math.Exp(1) + math.Exp(-1))
	if err != nil || r.Token != 3 || math.Abs(float64(r.Logprob)-(-1-lse)) > 1e-6 {
		t.Errorf("forced token %d logprob %v (%v), want 3 with the model's %v", r.Token, r.Logprob, err, -1-lse)
	}
	s, _ = New(Options{LogitBias: map[int32]float32{4: 1}})
	if _, err := s.Next(logits); err == nil {
		t.Error("a bias on token 4 of a 4-token row: want an error")
	}
	for _, b := range []map[int32]float32{{0: 100.5}, {0: -101}, {-1: 1}, {0: float32(math.NaN())}, {0: float32(math.Inf(-1))}} {
		if _, err := New(Options{LogitBias: b}); err == nil {
			t.Errorf("bias %v: want an error", b)
		}
	}
	if _, err := New(Options{LogitBias: map[int32]float32{0: -100, 1: 100}}); err != nil {
		t.Errorf("bias at the limits: %v", err)
	}
}

func TestLogprobs(t *testing.T) {
	logits := []float32{1, 3, 2, 3}
	s, _ := New(Options{Logprobs: true, TopLogprobs: 3})
	r, err := s.Next(logits)
	if err != nil {
		t.Fatal(err)
	}
	lse := math.Log(math.Exp(1) + 2*math.Exp(3) + math.Exp(2))
	if r.Token != 1 || math.Abs(float64(r.Logprob)-(3-lse)) > 1e-6 {
		t.Errorf("token %d logprob %v, want 1, %v", r.Token, r.Logprob, 3-lse)
	}
	wantIDs := []int32{1, 3, 2}
	if len(r.Top) != 3 {
		t.Fatalf("top = %v", r.Top)
	}
	for i, e := range r.Top {
		if e.Token != wantIDs[i] || math.Abs(float64(e.Logprob)-(float64(logits[e.Token])-lse)) > 1e-6 {
			t.Errorf("top[%d] = %+v, want token %d", i, e, wantIDs[i])
		}
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{
		{TopK: -1}, {TopP: 1.5}, {TopP: -0.1}, {MinP: 2}, {RepetitionPenalty: -1},
		{PresencePenalty: 3}, {FrequencyPenalty: -2.5}, {TopLogprobs: 21}, {Temperature: math.NaN()},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}

func BenchmarkSampleTopKTopP(b *testing.B) {
	logits := make([]float32, 151936)
	r := uint32(1)
	for i := range logits {
		r = r*1664525 + 1013904223
		logits[i] = float32(r>>8) / (1 << 24) * 8
	}
	s, _ := New(Options{Temperature: 0.6, TopK: 20, TopP: 0.95, Seed: 1})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Sample(logits)
		s.counts = map[int32]int32{}
	}
}

func TestTopKHeap(t *testing.T) {
	r := uint32(3)
	for trial := 0; trial < 200; trial++ {
		n := 1 + trial%41
		l := make([]float32, n)
		for i := range l {
			r = r*1664525 + 1013904223
			l[i] = float32(r >> 29) // many ties
		}
		k := 1 + int(r>>7)%n
		var all []cand
		for i, v := range l {
			all = append(all, cand{int32(i), float64(v)})
		}
		slices.SortFunc(all, byProb)
		got := topK(nil, l, k)
		slices.SortFunc(got, byProb)
		if !slices.Equal(got, all[:k]) {
			t.Fatalf("n=%d k=%d: got %v, want %v", n, k, got, all[:k])
		}
	}
}
