package grammar

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/inference-pio/pio/frontends/tokenizer"
)

func maskHas(mask []uint64, id int32) bool { return mask[id>>6]&(1<<(id&63)) != 0 }

// bruteMask: each token tried on its own clone of m.
func bruteMask(m *Matcher, tokens [][]byte, eos []int32) []uint64 {
	mask := make([]uint64, (len(tokens)+63)/64)
	for id, t := range tokens {
		if len(t) > 0 && m.Clone().Accept(t) {
			mask[id>>6] |= 1 << (id & 63)
		}
	}
	if m.CanEnd() {
		for _, id := range eos {
			mask[id>>6] |= 1 << (id & 63)
		}
	}
	return mask
}

func TestMaskSmallVocab(t *testing.T) {
	tokens := [][]byte{[]byte("{"), []byte(`{"`), []byte(`"`), []byte("a"), []byte("ab"), []byte(`":`), []byte(" "), []byte("1"), []byte("12"), []byte("}"), nil, []byte(`"}`), []byte(","), []byte("é"), []byte{0xC3}, []byte{0xA9}}
	eos := []int32{10}
	v := NewVocab(tokens, eos)
	g, err := JSONSchema([]byte(`{"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "string"}}, "required": ["a"]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := g.NewMatcher()
	rng := rand.New(rand.NewPCG(1, 2))
	mask := make([]uint64, v.MaskWords())
	for step := 0; step < 40; step++ {
		v.Mask(m, mask)
		if want := bruteMask(m, tokens, eos); !slices.Equal(mask, want) {
			t.Fatalf("step %d: mask %b, brute force %b", step, mask, want)
		}
		var allowed []int32
		for id := range tokens {
			if maskHas(mask, int32(id)) {
				allowed = append(allowed, int32(id))
			}
		}
		if len(allowed) == 0 {
			return // a dead end of this tiny vocabulary, as brute force agrees
		}
		id := allowed[rng.IntN(len(allowed))]
		if id == eos[0] {
			return
		}
		m.Accept(tokens[id])
	}
}

// qwen3Vocab loads testdata/tokenizers/qwen3, or skips.
func qwen3Vocab(tb testing.TB) ([][]byte, []int32) {
	dir := filepath.Join("..", "testdata", "tokenizers", "qwen3")
	tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		tb.Skip("no Qwen3 tokenizer in testdata/tokenizers/qwen3 (make tokenizer-data fetches it)")
	}
	cj, _ := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	tok, err := tokenizer.Load(tj, cj)
	if err != nil {
		tb.Fatal(err)
	}
	tokens := make([][]byte, tok.VocabSize())
	for id := range tokens {
		if !tok.IsSpecial(int32(id)) {
			tokens[id] = tok.TokenBytes(int32(id))
		}
	}
	var eos []int32
	for _, s := range []string{"<|im_end|>", "<|endoftext|>"} {
		if id, ok := tok.TokenID(s); ok {
			eos = append(eos, id)
		}
	}
	return tokens, eos
}

// tokenWalk samples allowed tokens until EOS, timing every mask.
func tokenWalk(tb testing.TB, g *Grammar, v *Vocab, tokens [][]byte, eos []int32, rng *rand.Rand, check bool) (times []time.Duration) {
	m := g.NewMatcher()
	mask := make([]uint64, v.MaskWords())
	for step := 0; step < 300; step++ {
		start := time.Now()
		v.Mask(m, mask)
		times = append(times, time.Since(start))
		if check && step%25 == 0 {
			if want := bruteMask(m, tokens, eos); !slices.Equal(mask, want) {
				tb.Fatalf("step %d: mask differs from brute force", step)
			}
		}
		var allowed []int32
		for w, word := range mask {
			for ; word != 0; word &= word - 1 {
				allowed = append(allowed, int32(w*64+trailingZeros(word)))
			}
		}
		if len(allowed) == 0 {
			tb.Fatal("no token allowed")
		}
		id := allowed[rng.IntN(len(allowed))]
		if slices.Contains(eos, id) {
			return times
		}
		if !m.Accept(tokens[id]) {
			tb.Fatalf("token %d %q in the mask but rejected", id, tokens[id])
		}
	}
	return times
}

func trailingZeros(x uint64) int {
	n := 0
	for x&1 == 0 {
		x >>= 1
		n++
	}
	return n
}

// TestMaskQwen3: on the real vocabulary, masks along random token walks
// equal trying every token on its own.
func TestMaskQwen3(t *testing.T) {
	tokens, eos := qwen3Vocab(t)
	v := NewVocab(tokens, eos)
	if testing.Short() {
		t.Skip("brute-force masks over 151k tokens take about a minute")
	}
	for i, ts := range loadSchemas(t)[:2] {
		tokenWalk(t, ts.grammar, v, tokens, eos, rand.New(rand.NewPCG(uint64(i), 3)), true)
	}
}

// BenchmarkMaskQwen3 reports compile time and the p50/p99 of one mask over
// Qwen3's vocabulary along random token walks of several schemas.
func BenchmarkMaskQwen3(b *testing.B) {
	tokens, eos := qwen3Vocab(b)
	start := time.Now()
	v := NewVocab(tokens, eos)
	b.Logf("vocabulary trie: %d tokens, %d nodes, built in %v", len(tokens), len(v.nodes), time.Since(start))
	for _, name := range []string{"get_weather", "search_files", "create_event", "edit_file", "json_value"} {
		src, err := os.ReadFile(filepath.Join("testdata", "schemas", name+".json"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			start := time.Now()
			g, err := JSONSchema(src)
			if err != nil {
				b.Fatal(err)
			}
			compile := time.Since(start)
			var times []time.Duration
			rng := rand.New(rand.NewPCG(7, 7))
			for b.Loop() {
				times = append(times, tokenWalk(b, g, v, tokens, eos, rng, false)...)
			}
			sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
			b.ReportMetric(float64(compile.Microseconds()), "compile-µs")
			b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs/mask")
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs/mask")
			b.ReportMetric(float64(len(times))/float64(b.N), "masks/walk")
		})
	}
}

// cacheTestVocab: every string of one and two bytes over a JSON-ish
// alphabet, some longer tokens with quotes inside, and multi-byte pieces.
func cacheTestVocab() [][]byte {
	alphabet := []byte(`{}[]":, 0123456789abcdefxyz-._/\ne`)
	tokens := [][]byte{nil}
	for _, a := range alphabet {
		tokens = append(tokens, []byte{a})
		for _, b := range alphabet {
			tokens = append(tokens, []byte{a, b})
		}
	}
	for _, s := range []string{`": "`, `", "`, `"}`, `"]`, `true`, `false`, `null`, `é`, "日本", "\xC3", "\xA9", "\xE6\x97", `\u00`, `abc"`, `"a":1`, `{"query": "`} {
		tokens = append(tokens, []byte(s))
	}
	return tokens
}

// TestMaskCache: along random walks, masks through the caches equal masks
// computed directly, including for clones masked again after the walk
// went on (a rollback to an earlier state).
func TestMaskCache(t *testing.T) {
	tokens := cacheTestVocab()
	eos := []int32{0}
	v := NewVocab(tokens, eos)
	direct := func(m *Matcher) []uint64 {
		mask := make([]uint64, v.MaskWords())
		v.maskDirect(m, v.scratch(), mask)
		return mask
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ts := range loadSchemas(t) {
		type saved struct {
			m    *Matcher
			mask []uint64
		}
		var past []saved
		for walk := 0; walk < 3; walk++ {
			m := ts.grammar.NewMatcher()
			for step := 0; step < 200; step++ {
				mask := make([]uint64, v.MaskWords())
				v.Mask(m, mask)
				if want := direct(m); !slices.Equal(mask, want) {
					t.Fatalf("%s: step %d: cached mask %x, direct %x", ts.name, step, mask, want)
				}
				past = append(past, saved{m.Clone(), mask})
				p := past[rng.IntN(len(past))]
				again := make([]uint64, v.MaskWords())
				v.Mask(p.m, again)
				if !slices.Equal(again, p.mask) {
					t.Fatalf("%s: step %d: an earlier state masked again differs", ts.name, step)
				}
				var allowed []int32
				for w, word := range mask {
					for ; word != 0; word &= word - 1 {
						allowed = append(allowed, int32(w*64+trailingZeros(word)))
					}
				}
				if len(allowed) == 0 {
					break
				}
				id := allowed[rng.IntN(len(allowed))]
				if id == eos[0] {
					break
				}
				if !m.Accept(tokens[id]) {
					t.Fatalf("%s: token %q in the mask but rejected", ts.name, tokens[id])
				}
			}
		}
	}
}
