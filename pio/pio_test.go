package pio

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

// tinyEngine builds testdata/tiny/qwen3-a into a temporary engine file.
func tinyEngine(t testing.TB) (string, *golden.Model) {
	t.Helper()
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tiny.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: path, DType: ir.F32}); err != nil {
		t.Fatal(err)
	}
	return path, g
}

func load(t testing.TB, opt Options) (*Engine, *golden.Model) {
	path, g := tinyEngine(t)
	e, err := Load(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, g
}

var zero = 0.0

func greedy(n int) GenerateOptions {
	return GenerateOptions{MaxTokens: n, Temperature: &zero, IgnoreEOS: true}
}

// TestConcurrentGreedyMatchesGolden runs the golden prompts many times at
// once, through small steps that mix chunked prefills with decodes: every
// run gives transformers' greedy tokens.
func TestConcurrentGreedyMatchesGolden(t *testing.T) {
	e, g := load(t, Options{MaxStepTokens: 8, MaxSeqs: 6, CacheTokens: 1024})
	var wg sync.WaitGroup
	for rep := 0; rep < 4; rep++ {
		for i, p := range g.Prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.GenerateIDs(context.Background(), p.IDs, greedy(len(p.Greedy)), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(res.Tokens, p.Greedy) {
					t.Errorf("prompt %d rep %d:\n got %v\nwant %v", i, rep, res.Tokens, p.Greedy)
				}
			}()
		}
	}
	wg.Wait()
	if st := e.Stats(); st.Steps == 0 || st.GeneratedTokens != int64(4*16*len(g.Prompts)) {
		t.Errorf("stats %+v", st)
	}
}

// TestPreemptionKeepsOutputs runs distinct prompts at once with a KV pool
// too small for all of them: sequences are preempted and recomputed, and
// every output equals the one the request gives alone.
func TestPreemptionKeepsOutputs(t *testing.T) {
	path, g := tinyEngine(t)
	ref, err := Load(path, Options{MaxStepTokens: 64, MaxSeqs: 1, CacheTokens: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	small, err := Load(path, Options{MaxStepTokens: 16, MaxSeqs: 6, CacheTokens: 96, BlockSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	var prompts, want [][]int32
	for i := 0; i < 6; i++ {
		p := slices.Clone(g.Prompts[2].IDs) // 19 + 16 positions: 5 blocks of 8; the pool holds 12
		p[0] = int32(10 + 7*i)
		res, err := ref.GenerateIDs(context.Background(), p, greedy(16), nil)
		if err != nil {
			t.Fatal(err)
		}
		prompts, want = append(prompts, p), append(want, res.Tokens)
	}
	// Whether requests overlap enough to run the pool dry depends on how
	// the goroutines are scheduled, so run rounds until one preempts
	// (every round's outputs must be right regardless).
	for round := 0; round < 10 && small.Stats().Preemptions == 0; round++ {
		var wg sync.WaitGroup
		for i := range prompts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := small.GenerateIDs(context.Background(), prompts[i], greedy(16), nil)
				if err != nil {
					t.Error(err)
					return
				}
				if !slices.Equal(res.Tokens, want[i]) {
					t.Errorf("round %d prompt %d:\n got %v\nwant %v", round, i, res.Tokens, want[i])
				}
			}()
		}
		wg.Wait()
	}
	if st := small.Stats(); st.Preemptions == 0 {
		t.Errorf("no preemptions in 10 rounds: %+v", st)
	} else {
		t.Logf("%d preemptions", st.Preemptions)
	}
}

func TestTextGenerateAndChat(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 32, MaxSeqs: 4, CacheTokens: 1024})
	var chunks []string
	res, err := e.Generate(context.Background(), "Hello world", greedy(12), func(c Chunk) { chunks = append(chunks, c.Text) })
	if err != nil {
		t.Fatal(err)
	}
	if res.CompletionTokens != 12 || res.FinishReason != "length" || strings.Join(chunks, "") != res.Text {
		t.Errorf("result %+v, chunks %q", res, chunks)
	}
	// A stop string taken from the greedy text cuts it there.
	if len(res.Text) > 4 {
		stop := res.Text[2:4]
		opt := greedy(12)
		opt.Stop = []string{stop}
		var streamed strings.Builder
		r2, err := e.Generate(context.Background(), "Hello world", opt, func(c Chunk) { streamed.WriteString(c.Text) })
		if err != nil {
			t.Fatal(err)
		}
		want := res.Text[:strings.Index(res.Text, stop)]
		if r2.Text != want || streamed.String() != want || r2.FinishReason != "stop" {
			t.Errorf("stop %q: text %q streamed %q finish %q, want %q", stop, r2.Text, streamed.String(), r2.FinishReason, want)
		}
	}
	cr, err := e.Chat(context.Background(), []Message{{Role: "user", Content: "Hi"}}, ChatOptions{GenerateOptions: greedy(8)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cr.CompletionTokens == 0 || cr.Role != "assistant" {
		t.Errorf("chat result %+v", cr)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.pio"), Options{}); err == nil {
		t.Error("missing file: want an error")
	}
	bad := filepath.Join(t.TempDir(), "bad.pio")
	os.WriteFile(bad, []byte("not an engine"), 0o644)
	if _, err := Load(bad, Options{}); err == nil {
		t.Error("garbage file: want an error")
	}
}

// TestRenderChat checks the engine renders its own (Qwen3) template with
// tools and enable_thinking.
func TestRenderChat(t *testing.T) {
	e, _ := load(t, Options{CacheTokens: 512})
	off := false
	tool := []byte(`{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}`)
	p, err := e.RenderChat([]Message{{Role: "system", Content: "S"}, {Role: "user", Content: "U"}},
		ChatOptions{EnableThinking: &off, Tools: []json.RawMessage{tool}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, "<|im_start|>system\nS\n\n# Tools") || !strings.Contains(p, `"name": "get_weather"`) ||
		!strings.HasSuffix(p, "<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n") {
		t.Errorf("rendered:\n%s", p)
	}
	ids, err := e.Encode(p)
	if err != nil || len(ids) == 0 {
		t.Fatalf("encode: %v", err)
	}
	if im, ok := e.text.TokenID("<|im_start|>"); !ok || ids[0] != im {
		t.Errorf("special token not matched: ids[0] = %d", ids[0])
	}
}

// TestSeedReproducible: a seeded sampled request gives the same tokens
// alone and among concurrent requests.
func TestSeedReproducible(t *testing.T) {
	e, g := load(t, Options{MaxStepTokens: 8, MaxSeqs: 4, CacheTokens: 1024})
	one, seed := 1.0, uint64(5)
	opt := GenerateOptions{MaxTokens: 16, Temperature: &one, Seed: &seed, IgnoreEOS: true}
	p := g.Prompts[1].IDs
	want, err := e.GenerateIDs(context.Background(), p, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opt
			if i%2 == 1 { // other seeds alongside
				s := uint64(100 + i)
				o.Seed = &s
			}
			res, err := e.GenerateIDs(context.Background(), p, o, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if i%2 == 0 && !slices.Equal(res.Tokens, want.Tokens) {
				t.Errorf("run %d: %v, want %v", i, res.Tokens, want.Tokens)
			}
		}()
	}
	wg.Wait()
	if slices.Equal(want.Tokens, g.Prompts[1].Greedy) {
		t.Logf("sampled output equals the greedy one (possible with a peaked tiny model)")
	}
}

// Options.Backend replaces the CPU backend (how `piort serve --device
// cuda` plugs in); the engine still generates the golden continuation
// through it, and a factory's error reaches the caller.
func TestBackendFactory(t *testing.T) {
	path, g := tinyEngine(t)
	calls := 0
	opt := Options{MaxStepTokens: 16, CacheTokens: 256, Backend: func(f *engine.Engine, sz BackendSize) (runtime.Backend, error) {
		calls++
		return cpu.FromEngine(f, cpu.Options{MaxTokens: sz.MaxTokens, NumBlocks: sz.NumBlocks, BlockSize: sz.BlockSize, MaxSeqs: sz.MaxSeqs, Threads: sz.Threads})
	}}
	e, err := Load(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := g.Prompts[1]
	zero := 0.0
	res, err := e.GenerateIDs(context.Background(), p.IDs, GenerateOptions{MaxTokens: len(p.Greedy), IgnoreEOS: true, Temperature: &zero}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 1 || !slices.Equal(res.Tokens, p.Greedy) {
		t.Errorf("factory called %d times; tokens %v, want %v", calls, res.Tokens, p.Greedy)
	}
	opt.Backend = func(*engine.Engine, BackendSize) (runtime.Backend, error) { return nil, errors.New("no such device") }
	if _, err := Load(path, opt); err == nil || !strings.Contains(err.Error(), "no such device") {
		t.Errorf("factory error: got %v", err)
	}
}

// TestLogitBias: GenerateOptions.LogitBias reaches the sampler: -100 on
// the greedy token makes greedy decoding take the runner-up, +100 on a
// token makes every step take it, greedy or sampled; a bias out of range
// or on a token outside the vocabulary is ErrInvalid naming logit_bias.
func TestLogitBias(t *testing.T) {
	e, g := load(t, Options{MaxStepTokens: 32, CacheTokens: 1024})
	ctx := context.Background()
	p := g.Prompts[1]
	opt := greedy(4)
	opt.TopLogprobs = 2
	plain, err := e.GenerateIDs(ctx, p.IDs, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(plain.Tokens, p.Greedy[:4]) {
		t.Fatalf("unbiased: %v, want transformers' %v", plain.Tokens, p.Greedy[:4])
	}
	runnerUp := plain.Logprobs[0].Top[1].Token // the model's second choice
	opt.LogitBias = map[int32]float32{p.Greedy[0]: -100}
	banned, err := e.GenerateIDs(ctx, p.IDs, opt, nil)
	if err != nil || banned.Tokens[0] != runnerUp {
		t.Errorf("-100 on the greedy token %d: %v %v, want the runner-up %d first", p.Greedy[0], banned.Tokens, err, runnerUp)
	}
	forced := int32(37)
	if slices.Contains(p.Greedy[:4], forced) {
		t.Fatalf("pick a forced token the model does not choose")
	}
	one, seed := 1.0, uint64(4)
	sampled := GenerateOptions{MaxTokens: 4, IgnoreEOS: true, Temperature: &one, Seed: &seed}
	for name, o := range map[string]GenerateOptions{"greedy": greedy(4), "sampled": sampled} {
		o.LogitBias = map[int32]float32{forced: 100}
		res, err := e.GenerateIDs(ctx, p.IDs, o, nil)
		if err != nil || !slices.Equal(res.Tokens, []int32{forced, forced, forced, forced}) {
			t.Errorf("%s, +100 on token %d: %v %v, want it four times", name, forced, res.Tokens, err)
		}
	}
	for _, bias := range []map[int32]float32{{forced: 101}, {512: 1}, {-1: 1}} { // the tiny vocabulary is 512
		o := greedy(1)
		o.LogitBias = bias
		if _, err := e.GenerateIDs(ctx, p.IDs, o, nil); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "logit_bias") {
			t.Errorf("logit bias %v: %v, want ErrInvalid naming logit_bias", bias, err)
		}
	}
}

// TestTokenBytes: Engine.TokenBytes gives a token's raw bytes: each of the
// three byte tokens 你 encodes to (in the tiny vocabulary) is one byte of
// it, where the token's text is U+FFFD; a special token gives its content;
// an id outside the vocabulary gives nil.
func TestTokenBytes(t *testing.T) {
	e, _ := load(t, Options{CacheTokens: 256})
	ids, err := e.Encode("你")
	if err != nil || len(ids) != 3 {
		t.Fatalf("encode 你: %v %v", ids, err)
	}
	var joined []byte
	for i, id := range ids {
		b := e.TokenBytes(id)
		if len(b) != 1 || b[0] != "你"[i] || e.tokenLogprob(id, 0).Text != "\uFFFD" {
			t.Errorf("token %d of 你: bytes %q, text %q; want %q and U+FFFD", id, b, e.tokenLogprob(id, 0).Text, "你"[i:i+1])
		}
		joined = append(joined, b...)
	}
	if string(joined) != "你" {
		t.Errorf("the tokens' bytes join to %q", joined)
	}
	if id, ok := e.text.TokenID("<|im_end|>"); !ok || string(e.TokenBytes(id)) != "<|im_end|>" {
		t.Errorf("<|im_end|> (%d, %v): bytes %q", id, ok, e.TokenBytes(id))
	}
	if b := e.TokenBytes(512); b != nil {
		t.Errorf("id 512: bytes %q, want nil", b)
	}
}

// TestLoadDefaults: zero Options take the Default constants (the backend
// sees them through its size; Threads stays 0, all CPUs), and a negative
// one fails Load.
func TestLoadDefaults(t *testing.T) {
	path, _ := tinyEngine(t)
	var got BackendSize
	e, err := Load(path, Options{Backend: func(f *engine.Engine, sz BackendSize) (runtime.Backend, error) {
		got = sz
		return cpu.FromEngine(f, cpu.Options{MaxTokens: sz.MaxTokens, NumBlocks: sz.NumBlocks, BlockSize: sz.BlockSize, MaxSeqs: sz.MaxSeqs, Threads: sz.Threads})
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	want := BackendSize{MaxTokens: DefaultMaxStepTokens, NumBlocks: DefaultCacheTokens / DefaultBlockSize, BlockSize: DefaultBlockSize, MaxSeqs: DefaultMaxSeqs}
	if got != want {
		t.Errorf("backend size %+v, want %+v", got, want)
	}
	if _, err := Load(path, Options{MaxQueue: -1}); err == nil || !strings.Contains(err.Error(), "negative option") {
		t.Errorf("MaxQueue -1: %v", err)
	}
}
