package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/text/unicode/norm"
)

const (
	corpusPath = "../../testdata/tokenizer/corpus.jsonl"
	qwen3Dir   = "../../testdata/tokenizers/qwen3" // make tokenizer-data
	tinyDir    = "../../testdata/tokenizer/tiny"
)

// expected is one line of testdata/tokenizer/expected_<name>.jsonl, written by HF tokenizers.
type expected struct {
	IDs  []int32 `json:"ids"`
	Text string  `json:"text"` // decode(ids, skip_special_tokens=False)
	Skip string  `json:"skip"` // decode(ids, skip_special_tokens=True)
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, v)
	}
	return out
}

// loaded keeps tokenizers across tests: the real Qwen3 one takes about a second to load.
var (
	loadedMu sync.Mutex
	loaded   = map[string]*Tokenizer{}
)

func loadDir(t testing.TB, dir string) *Tokenizer {
	t.Helper()
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if tok, ok := loaded[dir]; ok {
		return tok
	}
	tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		if os.IsNotExist(err) && dir == qwen3Dir {
			t.Skip("real Qwen3 tokenizer not fetched: run `make tokenizer-data`")
		}
		t.Fatal(err)
	}
	cj, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Load(tj, cj)
	if err != nil {
		t.Fatal(err)
	}
	loaded[dir] = tok
	return tok
}

// TestParity checks every line of the corpus against HF tokenizers: ids, decode with and without
// special tokens, streaming decode.
func TestParity(t *testing.T) {
	corpus := readJSONL[string](t, corpusPath)
	for _, name := range []string{"qwen3", "tiny"} {
		t.Run(name, func(t *testing.T) {
			dir := map[string]string{"qwen3": qwen3Dir, "tiny": tinyDir}[name]
			tok := loadDir(t, dir)
			want := readJSONL[expected](t, "../../testdata/tokenizer/expected_"+name+".jsonl")
			if len(want) != len(corpus) {
				t.Fatalf("expected_%s.jsonl has %d lines, corpus %d: run `make tokenizer-golden`", name, len(want), len(corpus))
			}
			same, tokens := 0, 0
			for i, s := range corpus {
				w := want[i]
				tokens += len(w.IDs)
				got := tok.Encode(s)
				if d := cmp.Diff(got, w.IDs, cmpopts.EquateEmpty()); d != "" {
					t.Errorf("line %d %q: ids (-got +want):\n%s", i+1, short(s), d)
				} else {
					same++
				}
				if g := tok.Decode(w.IDs, false); g != w.Text {
					t.Errorf("line %d: Decode = %q, HF %q", i+1, g, w.Text)
				}
				if g := tok.Decode(w.IDs, true); g != w.Skip {
					t.Errorf("line %d: Decode(skip special) = %q, HF %q", i+1, g, w.Skip)
				}
				for _, skip := range []bool{false, true} {
					if g, wd := streamDecode(tok, w.IDs, skip), tok.Decode(w.IDs, skip); g != wd {
						t.Errorf("line %d: stream decode (skip=%v) = %q, whole %q", i+1, skip, g, wd)
					}
				}
				if n := norm.NFC.String(s); tok.Decode(tok.Encode(s), false) != n {
					t.Errorf("line %d: Decode(Encode(x)) != NFC(x)", i+1)
				}
			}
			t.Logf("%s: %d/%d lines identical to HF tokenizers (%d tokens)", name, same, len(corpus), tokens)
		})
	}
}

// TestRandomParity checks 400 random strings mixing Unicode classes (letters, marks, every kind
// of number, Unicode whitespace, CJK, emoji, contractions, added tokens) against HF tokenizers.
func TestRandomParity(t *testing.T) {
	tok := loadDir(t, qwen3Dir)
	type row struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	}
	rows := readJSONL[row](t, "../../testdata/tokenizer/expected_random_qwen3.jsonl")
	same := 0
	for i, r := range rows {
		if got := tok.Encode(r.Text); !cmp.Equal(got, r.IDs, cmpopts.EquateEmpty()) {
			t.Errorf("string %d %q:\n got %v\nwant %v", i+1, r.Text, got, r.IDs)
			continue
		}
		same++
	}
	t.Logf("random: %d/%d strings identical to HF tokenizers", same, len(rows))
}

func short(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

func streamDecode(tok *Tokenizer, ids []int32, skip bool) string {
	d := tok.NewStreamDecoder(skip)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(d.Add(id))
	}
	b.WriteString(d.Flush())
	return b.String()
}

func TestAccessors(t *testing.T) {
	tok := loadDir(t, tinyDir)
	if got := tok.VocabSize(); got != 512 {
		t.Errorf("VocabSize = %d, want 512", got)
	}
	// The tiny tokenizer gives byte b the id b; model tokens are spelt in the ByteLevel alphabet.
	for s, want := range map[string]int32{"<|im_end|>": 511, "<|endoftext|>": 510, "<|im_start|>": 508, "<think>": 506, "Ġ": ' ', "a": 'a'} {
		if id, ok := tok.TokenID(s); !ok || id != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", s, id, ok, want)
		}
	}
	if _, ok := tok.TokenID("<|nope|>"); ok {
		t.Error("TokenID of an unknown token succeeded")
	}
	if !tok.IsSpecial(511) || tok.IsSpecial(506) || tok.IsSpecial(5) {
		t.Error("IsSpecial: want true for <|im_end|>, false for <think> and a byte")
	}
	if !strings.Contains(tok.ChatTemplate(), "<|im_start|>") {
		t.Error("ChatTemplate does not hold the ChatML template")
	}
	if got := tok.Decode([]int32{-1, 99999, 'h', 'i'}, false); got != "hi" {
		t.Errorf("Decode with unknown ids = %q, want %q", got, "hi")
	}
}

func TestStreamHoldsIncompleteUTF8(t *testing.T) {
	tok := loadDir(t, tinyDir)
	// "€" is E2 82 AC: three single-byte tokens.
	d := tok.NewStreamDecoder(false)
	var got []string
	for _, b := range []byte("a€b") {
		got = append(got, d.Add(tok.byteID[b]))
	}
	got = append(got, d.Flush())
	if want := []string{"a", "", "", "€", "b", ""}; !cmp.Equal(got, want) {
		t.Errorf("stream pieces = %q, want %q", got, want)
	}
	// A truncated character at the end becomes one U+FFFD on Flush, as in Decode.
	d = tok.NewStreamDecoder(false)
	if s := d.Add(tok.byteID[0xE2]) + d.Add(tok.byteID[0x82]); s != "" {
		t.Errorf("incomplete prefix emitted %q", s)
	}
	if s := d.Flush(); s != "\uFFFD" {
		t.Errorf("Flush = %q, want U+FFFD", s)
	}
}

// TestDecodeParity checks Decode and the stream decoder against HF tokenizers' decode of
// arbitrary id sequences: broken UTF-8, special tokens in between, unknown ids.
func TestDecodeParity(t *testing.T) {
	tok := loadDir(t, tinyDir)
	want := readJSONL[expected](t, "../../testdata/tokenizer/expected_decode_tiny.jsonl")
	same := 0
	for i, w := range want {
		ok := true
		for _, c := range []struct {
			skip bool
			want string
		}{{false, w.Text}, {true, w.Skip}} {
			if g := tok.Decode(w.IDs, c.skip); g != c.want {
				t.Errorf("case %d %v: Decode(skip=%v) = %q, HF %q", i+1, w.IDs, c.skip, g, c.want)
				ok = false
			}
			if g := streamDecode(tok, w.IDs, c.skip); g != c.want {
				t.Errorf("case %d %v: stream decode (skip=%v) = %q, HF %q", i+1, w.IDs, c.skip, g, c.want)
				ok = false
			}
		}
		if ok {
			same++
		}
	}
	t.Logf("decode: %d/%d id sequences identical to HF tokenizers", same, len(want))
}

func TestLossyMatchesRust(t *testing.T) {
	// Expected strings follow Rust's String::from_utf8_lossy (maximal subparts); HF's decode of
	// the same bytes agrees (expected_decode_tiny.jsonl).
	cases := []struct {
		in   []byte
		want string
	}{
		{[]byte("ok"), "ok"},
		{[]byte{0xE2, 0x82}, "\uFFFD"},
		{[]byte{0xE2, 0x82, 'x'}, "\uFFFDx"},
		{[]byte{0xFF, 0xFE}, "\uFFFD\uFFFD"},
		{[]byte{0xED, 0xA0, 0x80}, "\uFFFD\uFFFD\uFFFD"}, // surrogate: E D then A0 is out of range
		{[]byte{0xF0, 0x9F, 0x98}, "\uFFFD"},
		{[]byte{0xF0, 0x9F, 0x98, 0x80}, "😀"},
		{[]byte{0xC0, 0x80}, "\uFFFD\uFFFD"},
		{[]byte{0x80, 'a'}, "\uFFFDa"},
	}
	for _, c := range cases {
		if got := string(appendLossy(nil, c.in)); got != c.want {
			t.Errorf("lossy(% x) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAddedTokenFlags(t *testing.T) {
	// A tiny vocabulary with an lstrip/rstrip token, a single_word token, and a normalized one.
	vocab := map[string]int{}
	for b := 0; b < 256; b++ {
		vocab[string(byteToRune[b])] = b
	}
	tj, _ := json.Marshal(map[string]any{
		"added_tokens": []map[string]any{
			{"id": 256, "content": "<mask>", "lstrip": true, "rstrip": true, "normalized": false, "special": true},
			{"id": 257, "content": "ony", "single_word": true, "normalized": false},
			{"id": 258, "content": "é", "normalized": true},
		},
		"normalizer":    map[string]any{"type": "NFC"},
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
		"decoder":       map[string]any{"type": "ByteLevel"},
		"model":         map[string]any{"type": "BPE", "vocab": vocab, "merges": []string{}},
	})
	tok, err := Load(tj, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := func(s string) []int32 {
		var out []int32
		for i := 0; i < len(s); i++ {
			out = append(out, int32(s[i]))
		}
		return out
	}
	cat := func(parts ...[]int32) []int32 {
		var out []int32
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		in   string
		want []int32
	}{
		{"a <mask>  b", cat(ids("a"), []int32{256}, ids("b"))},
		{"ony Tony ony", cat([]int32{257}, ids(" Tony "), []int32{257})},
		{"e\u0301", []int32{258}}, // normalized: NFC turns e + U+0301 into é first
	}
	for _, c := range cases {
		if got := tok.Encode(c.in); !cmp.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	cases := map[string]string{
		"not json":      `{`,
		"wordpiece":     `{"model": {"type": "WordPiece", "vocab": {"a": 0}}}`,
		"bad merge":     `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`,
		"bad regex":     `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}, {"type": "ByteLevel"}]}, "decoder": {"type": "ByteLevel"}}`,
		"no bytelevel":  `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"}}`,
		"huge id":       `{"model": {"type": "BPE", "vocab": {"a": 2000000000}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`,
		"huge added":    `{"added_tokens": [{"id": 2000000000, "content": "x"}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`,
		"negative id":   `{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`,
		"add prefix":    `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true}, "decoder": {"type": "ByteLevel"}}`,
		"nfkc":          `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "NFKC"}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`,
		"byte fallback": `{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "byte_fallback": true}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`,
	}
	for name, js := range cases {
		if _, err := Load([]byte(js), nil); err == nil {
			t.Errorf("%s: Load succeeded, want an error", name)
		}
	}
	if _, err := Load([]byte(`{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}`), []byte(`{"chat_template": 3}`)); err == nil {
		t.Error("a numeric chat_template loaded without error")
	}
}

func TestChatTemplateList(t *testing.T) {
	got, err := chatTemplateFromConfig([]byte(`{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}`))
	if err != nil || got != "D" {
		t.Errorf("named list: got %q, %v; want %q", got, err, "D")
	}
}

func FuzzEncodeDecode(f *testing.F) {
	tok := loadDir(f, tinyDir)
	for _, s := range readJSONL[string](f, corpusPath) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids := tok.Encode(s)
		got := tok.Decode(ids, false)
		if !strings.Contains(s, "\uFFFD") && isValid(s) && got != norm.NFC.String(s) {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		if st := streamDecode(tok, ids, true); st != tok.Decode(ids, true) {
			t.Fatalf("stream decode %q != decode %q", st, tok.Decode(ids, true))
		}
	})
}

func isValid(s string) bool { return strings.ToValidUTF8(s, "") == s }

// BenchmarkEncode reports MB/s over the corpus, line by line and as one text joined with "\n",
// as testdata/tokenizer/make_expected.py times HF tokenizers; lines-nocache clears the BPE cache
// each pass. cpu-MB/s divides by the process's CPU time instead of wall time (steadier on a
// shared machine; make_expected.py prints HF's both ways).
func BenchmarkEncode(b *testing.B) {
	corpus := readJSONL[string](b, corpusPath)
	joined := strings.Join(corpus, "\n")
	for _, name := range []string{"qwen3", "tiny"} {
		dir := map[string]string{"qwen3": qwen3Dir, "tiny": tinyDir}[name]
		for _, mode := range []string{"lines", "joined", "lines-nocache"} {
			b.Run(name+"/"+mode, func(b *testing.B) {
				tok := *loadDir(b, dir) // a copy: lines-nocache replaces its cache
				texts := corpus
				if mode == "joined" {
					texts = []string{joined}
				}
				n := 0
				for _, s := range texts {
					n += len(s)
				}
				b.SetBytes(int64(n))
				b.ResetTimer()
				cpu0 := cpuTime()
				for b.Loop() {
					if mode == "lines-nocache" {
						tok.cache = newCache()
					}
					for _, s := range texts {
						tok.Encode(s)
					}
				}
				if cpu := cpuTime() - cpu0; cpu > 0 {
					b.ReportMetric(float64(n)*float64(b.N)/cpu.Seconds()/1e6, "cpu-MB/s")
				}
			})
		}
	}
}

// TestConcurrentEncode encodes from several goroutines at once (shared BPE cache), as a server does.
func TestConcurrentEncode(t *testing.T) {
	tok, err := Load(mustRead(t, tinyDir+"/tokenizer.json"), nil) // a fresh, empty cache
	if err != nil {
		t.Fatal(err)
	}
	corpus := readJSONL[string](t, corpusPath)
	want := readJSONL[expected](t, "../../testdata/tokenizer/expected_tiny.jsonl")
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, s := range corpus {
				if !cmp.Equal(tok.Encode(s), want[i].IDs, cmpopts.EquateEmpty()) {
					errs <- fmt.Sprintf("line %d differs under concurrency", i+1)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzLoad feeds Load arbitrary tokenizer.json / tokenizer_config.json bytes: an error or a
// working tokenizer, never a panic.
func FuzzLoad(f *testing.F) {
	f.Add(mustRead(f, tinyDir+"/tokenizer.json"), []byte(`{"chat_template": "x"}`))
	f.Add([]byte(`{"added_tokens": [{"id": 3, "content": "<s>", "special": true, "lstrip": true}], "normalizer": {"type": "NFC"},
		"pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)|\\s+|\\w+"}, "behavior": "Isolated"}, {"type": "ByteLevel", "use_regex": false}]},
		"decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}}`), []byte(`{"chat_template": [{"name": "default", "template": "t"}]}`))
	f.Fuzz(func(t *testing.T, tj, cj []byte) {
		tok, err := Load(tj, cj)
		if err != nil {
			return
		}
		ids := tok.Encode("ab <s> a\u00e9\n\n  b")
		tok.Decode(ids, true)
		tok.Decode([]int32{-5, 0, 1 << 30}, false)
		d := tok.NewStreamDecoder(false)
		for _, id := range ids {
			d.Add(id)
		}
		d.Flush()
	})
}

// TestTinyModelCarriesTokenizer checks that testdata/tiny/qwen3-a holds the current synthetic
// tokenizer (make_golden.py copies it there) and that its special ids fit the model config.
func TestTinyModelCarriesTokenizer(t *testing.T) {
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if !bytes.Equal(mustRead(t, tinyDir+"/"+f), mustRead(t, "../../testdata/tiny/qwen3-a/"+f)) {
			t.Errorf("testdata/tiny/qwen3-a/%s differs from testdata/tokenizer/tiny/%s: run `make golden`", f, f)
		}
	}
	var cfg struct {
		VocabSize int   `json:"vocab_size"`
		BOS       int32 `json:"bos_token_id"`
		EOS       int32 `json:"eos_token_id"`
	}
	if err := json.Unmarshal(mustRead(t, "../../testdata/tiny/qwen3-a/config.json"), &cfg); err != nil {
		t.Fatal(err)
	}
	tok := loadDir(t, tinyDir)
	if tok.VocabSize() != cfg.VocabSize {
		t.Errorf("VocabSize %d, model vocab_size %d", tok.VocabSize(), cfg.VocabSize)
	}
	if id, _ := tok.TokenID("<|endoftext|>"); id != cfg.BOS {
		t.Errorf("<|endoftext|> = %d, model bos %d", id, cfg.BOS)
	}
	if id, _ := tok.TokenID("<|im_end|>"); id != cfg.EOS {
		t.Errorf("<|im_end|> = %d, model eos %d", id, cfg.EOS)
	}
}

// TestTokenBytes: a token's raw bytes are its ByteLevel decoding alone (the part of a character
// a token holds, where Decode gives U+FFFD), an added token's are its content, and an unknown id
// gives nil. The ids and bytes of the cases are read from tokenizer.json's vocabulary. Joined over
// HF's ids of each corpus line, the bytes are HF's decoded text; over HF's decode cases of the
// tiny tokenizer (broken UTF-8, special tokens in between, unknown ids), their lossy UTF-8 is
// HF's decode.
func TestTokenBytes(t *testing.T) {
	type tokenCase struct {
		id   int32
		want string
	}
	for _, c := range []struct {
		name  string
		cases []tokenCase
	}{
		{"qwen3", []tokenCase{
			{160, "\xe4"}, {8519, "\xe4\xbd"}, {11336, "\xe9\x80"}, {9284, "\xf0\x9f"}, // parts of 你, 适, 😀
			{56568, "你"}, {108386, "你好"}, {99340, "适"}, {141334, "😀"}, {220, " "}, {1879, " world"},
			{151645, "<|im_end|>"}, {151667, "<think>"}, {151657, "<tool_call>"},
		}},
		{"tiny", []tokenCase{
			{228, "\xe4"}, {226, "\xe2"}, {300, " wor"}, {400, "content"}, {511, "<|im_end|>"}, {506, "<think>"},
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := map[string]string{"qwen3": qwen3Dir, "tiny": tinyDir}[c.name]
			tok := loadDir(t, dir)
			for _, tc := range c.cases {
				if got := tok.TokenBytes(tc.id); string(got) != tc.want {
					t.Errorf("TokenBytes(%d) = %q, want %q", tc.id, got, tc.want)
				}
				if d, lossy := tok.Decode([]int32{tc.id}, false), string(appendLossy(nil, []byte(tc.want))); d != lossy {
					t.Errorf("token %d: Decode %q, want the lossy text %q of its bytes", tc.id, d, lossy)
				}
			}
			for _, id := range []int32{-1, int32(tok.VocabSize()), 1 << 30} {
				if b := tok.TokenBytes(id); b != nil {
					t.Errorf("unknown id %d: TokenBytes = %q, want nil", id, b)
				}
			}
			for i, w := range readJSONL[expected](t, "../../testdata/tokenizer/expected_"+c.name+".jsonl") {
				if joined := joinBytes(tok, w.IDs); string(joined) != w.Text {
					t.Errorf("corpus line %d: the tokens' bytes join to %q, HF decodes %q", i+1, short(string(joined)), short(w.Text))
				}
			}
		})
	}
	tok := loadDir(t, tinyDir)
	for i, w := range readJSONL[expected](t, "../../testdata/tokenizer/expected_decode_tiny.jsonl") {
		if g := string(appendLossy(nil, joinBytes(tok, w.IDs))); g != w.Text {
			t.Errorf("decode case %d %v: the tokens' bytes read %q, HF decodes %q", i+1, w.IDs, g, w.Text)
		}
	}
}

// joinBytes is the raw bytes of ids, one token after another.
func joinBytes(tok *Tokenizer, ids []int32) []byte {
	var b []byte
	for _, id := range ids {
		b = append(b, tok.TokenBytes(id)...)
	}
	return b
}
