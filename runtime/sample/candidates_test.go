package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// cutList is what a backend's candidates kernel returns for a row: every
// token whose logit v has v - max >= -d in f32 arithmetic, in id order.
func cutList(row []float32, d float32) (ids []int32, vals []float32) {
	m := row[Argmax(row)]
	for i, v := range row {
		if v-m >= -d {
			ids = append(ids, int32(i))
			vals = append(vals, v)
		}
	}
	return ids, vals
}

// randomRow makes logits of one of several shapes: Gaussian at several
// scales, heavy ties, -Inf entries, huge magnitudes, a near-flat row.
func randomRow(r *rand.Rand, n, kind int) []float32 {
	row := make([]float32, n)
	for i := range row {
		switch kind {
		case 0: // LLM-like: Gaussian with a few standouts
			row[i] = float32(r.NormFloat64() * 3)
			if r.IntN(200) == 0 {
				row[i] += float32(10 + 10*r.Float64())
			}
		case 1: // ties
			row[i] = float32(r.IntN(8)) * 0.25
		case 2: // -Inf entries
			row[i] = float32(r.NormFloat64())
			if r.IntN(3) == 0 {
				row[i] = float32(math.Inf(-1))
			}
		case 3: // huge range
			row[i] = float32(r.NormFloat64() * 1e37)
		case 4: // nearly flat
			row[i] = float32(1 + r.Float64()*1e-6)
		default: // small spread
			row[i] = float32(r.NormFloat64() * 0.1)
		}
	}
	if kind == 2 && n > 0 && math.IsInf(float64(row[0]), -1) {
		row[0] = 0 // keep a finite maximum
	}
	return row
}

// TestNextFromCandidates: for random rows, temperatures, top-k / top-p /
// min-p settings and seeds, a sampler fed the candidate lists (the cut the
// sampler asks for, or a lower one: any superset) draws exactly the tokens
// a sampler with the same seed draws from the full rows, from the same
// candidates (ids, order and probabilities to the bit), falling back to
// the full row only when top-k reaches below the list.
func TestNextFromCandidates(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	temps := []float64{1e-6, 0.1, 0.7, 1, 1.5, 3, 1e5}
	var used, fell int
	for trial := 0; trial < 400; trial++ {
		n := []int{1, 2, 7, 50, 1000, 4096}[r.IntN(6)]
		if trial%100 == 0 {
			n = 151936 // Qwen3's vocabulary
		}
		kind := r.IntN(6)
		opt := Options{
			Temperature: temps[r.IntN(len(temps))],
			TopK:        []int{0, 0, 1, 5, 50, n, n + 1}[r.IntN(7)],
			TopP:        []float64{0, 0, 0.5, 0.9, 1}[r.IntN(5)],
			MinP:        []float64{0, 0, 0.05, 0.5}[r.IntN(4)],
			Seed:        r.Uint64(),
		}
		full, _ := New(opt)
		fromList, _ := New(opt)
		d, ok := fromList.Candidates()
		if !ok {
			t.Fatalf("options %+v: no candidates", opt)
		}
		name := fmt.Sprintf("trial %d (vocab %d, kind %d, %+v)", trial, n, kind, opt)
		for step := 0; step < 8; step++ {
			row := randomRow(r, n, kind)
			cut := d
			if step%2 == 1 {
				cut = d * float32(1+r.Float64()*3) // a superset
			}
			ids, vals := cutList(row, cut)
			want, err := full.Next(row)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, ok, err := fromList.NextFromCandidates(ids, vals, n)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if ok {
				used++
			} else {
				fell++
				if got, err = fromList.Next(row); err != nil {
					t.Fatal(err)
				}
			}
			if ok && !slices.Equal(fromList.cand, full.cand) {
				t.Fatalf("%s step %d: the draws' candidates differ: %d from the list, %d from the full row", name, step, len(fromList.cand), len(full.cand))
			}
			if got.Token != want.Token {
				t.Fatalf("%s step %d: %d from %d candidates (ok %v), %d from the full row", name, step, got.Token, len(ids), ok, want.Token)
			}
		}
	}
	if used < 8*fell || used == 0 {
		t.Errorf("%d draws from candidates, %d fell back to the full row: the test barely exercises the list", used, fell)
	}
	t.Logf("%d draws from candidates, %d fell back", used, fell)
}

// TestCandidatesEligibility: greedy decoding, penalties and
// log-probabilities need the full row; a bad list is an error; a top-k
// larger than the list asks for the full row without drawing.
func TestCandidatesEligibility(t *testing.T) {
	for _, opt := range []Options{
		{}, {Temperature: 1, RepetitionPenalty: 1.1}, {Temperature: 1, PresencePenalty: 0.5},
		{Temperature: 1, FrequencyPenalty: -0.5}, {Temperature: 1, Logprobs: true}, {Temperature: 1, TopLogprobs: 2},
		{Temperature: 1, LogitBias: map[int32]float32{3: -100}},
	} {
		s, _ := New(opt)
		if _, ok := s.Candidates(); ok {
			t.Errorf("%+v: candidates allowed", opt)
		}
		if _, ok, err := s.NextFromCandidates([]int32{0}, []float32{1}, 4); ok || err != nil {
			t.Errorf("%+v: NextFromCandidates ok %v, err %v", opt, ok, err)
		}
	}
	s, _ := New(Options{Temperature: 0.5})
	d, ok := s.Candidates()
	if !ok || !(d > 15) || d > 15.1 {
		t.Errorf("temperature 0.5: offset %v, %v; want just above 15", d, ok)
	}
	for _, c := range []struct {
		ids  []int32
		vals []float32
	}{{[]int32{1, 1}, []float32{0, 0}}, {[]int32{2, 1}, []float32{0, 0}}, {[]int32{4}, []float32{0}}, {[]int32{-1}, []float32{0}}, {[]int32{1}, nil}} {
		if _, _, err := s.NextFromCandidates(c.ids, c.vals, 4); err == nil {
			t.Errorf("ids %v vals %v: no error", c.ids, c.vals)
		}
	}
	k, _ := New(Options{Temperature: 1, TopK: 3, Seed: 5})
	ref, _ := New(Options{Temperature: 1, TopK: 3, Seed: 5})
	row := []float32{0, 5, 1, 4, -1}
	if _, ok, err := k.NextFromCandidates([]int32{1, 3}, []float32{5, 4}, 5); ok || err != nil {
		t.Fatalf("top-k 3 from 2 candidates: ok %v, err %v", ok, err)
	}
	for i := 0; i < 20; i++ { // the refused call drew nothing
		a, _ := k.Next(row)
		b, _ := ref.Next(row)
		if a.Token != b.Token {
			t.Fatalf("draw %d after a refused list: %d, want %d", i, a.Token, b.Token)
		}
	}
}

// TestCandidatesOffsetCovers: near the cut, every logit the f64 filter of
// a draw keeps ((v-m)/T >= -30) passes the f32 test a backend applies with
// the offset Candidates gives (v - m >= -offset), over magnitudes where
// f32 subtraction rounds and temperatures down to f32 subnormal offsets.
func TestCandidatesOffsetCovers(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	kept := 0
	for i := 0; i < 200000; i++ {
		temp := math.Pow(10, -40+r.Float64()*74)
		s, _ := New(Options{Temperature: temp})
		d, _ := s.Candidates()
		// The maximum near 30·T in magnitude, where v - m rounds in f32.
		m := float32((r.Float64()*2 - 1) * 30 * temp * math.Pow(10, r.Float64()*6-3))
		if math.IsInf(float64(m), 0) || m == 0 {
			continue
		}
		// A logit at the f64 cut, then a few f32 steps either side.
		v := float32(float64(m) - 30*temp)
		for j := 0; j < int(r.IntN(4)); j++ {
			if r.IntN(2) == 0 {
				v = math.Nextafter32(v, float32(math.Inf(1)))
			} else {
				v = math.Nextafter32(v, float32(math.Inf(-1)))
			}
		}
		if v > m || math.IsInf(float64(v), 0) {
			continue
		}
		if (float64(v)-float64(m))/temp >= -30 {
			kept++
			if !(v-m >= -d) {
				t.Fatalf("T=%g m=%g v=%g: kept by the draw, cut by the offset %g", temp, m, v, d)
			}
		}
	}
	if kept < 10000 {
		t.Errorf("only %d logits at the cut were kept: the test misses the boundary", kept)
	}
}
