package server

import (
	"context"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inference-pio/pio/pio"
)

// optionsEngine records the options of each generation and answers "ok".
type optionsEngine struct {
	Engine // the methods the tests use are below
	mu     sync.Mutex
	got    []pio.GenerateOptions
}

func (r *optionsEngine) Name() string                   { return "m" }
func (r *optionsEngine) MaxModelLen() int               { return 100 }
func (r *optionsEngine) Encode(string) ([]int32, error) { return []int32{1}, nil }

func (r *optionsEngine) record(o pio.GenerateOptions) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, o)
}

func (r *optionsEngine) GenerateIDs(ctx context.Context, prompt []int32, opt pio.GenerateOptions, fn func(pio.Chunk)) (pio.Result, error) {
	r.record(opt)
	return pio.Result{Text: "ok", FinishReason: "stop", PromptTokens: 1}, nil
}

func (r *optionsEngine) Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error) {
	r.record(opt.GenerateOptions)
	out := pio.ChatResult{Result: pio.Result{FinishReason: "stop", PromptTokens: 1}}
	out.Role, out.Content = "assistant", "ok"
	return out, nil
}

// TestDefaults: Config.Defaults fill every sampling parameter a request
// leaves out (or sends as null), in both endpoints; a request's own value
// wins, even one equal to the engine's own default (presence_penalty 0,
// top_k -1); n choices draw from seeds derived from a default seed as from
// a request's; New refuses a default out of the range a request may send.
func TestDefaults(t *testing.T) {
	maxSeed := uint64(math.MaxUint64)
	d := Defaults{Temperature: ptr(0.5), TopP: ptr(0.9), TopK: ptr(5), MinP: ptr(0.05), RepetitionPenalty: ptr(1.1),
		PresencePenalty: ptr(0.3), FrequencyPenalty: ptr(-0.2), Seed: &maxSeed}
	eng := &optionsEngine{}
	url := httptestServer(t, mustNew(t, eng, Config{Defaults: d}))
	last := func(body string) []pio.GenerateOptions {
		t.Helper()
		eng.got = nil
		path := "/v1/completions"
		if strings.Contains(body, "messages") {
			path = "/v1/chat/completions"
		}
		postOK(t, url+path, body)
		return eng.got
	}
	defaulted := pio.GenerateOptions{Temperature: ptr(0.5), TopP: ptr(0.9), TopK: ptr(5), MinP: ptr(0.05), RepetitionPenalty: ptr(1.1),
		PresencePenalty: 0.3, FrequencyPenalty: -0.2, Seed: &maxSeed}
	own := pio.GenerateOptions{Temperature: ptr(0.1), TopP: ptr(1.0), TopK: ptr(0), MinP: ptr(0.0), RepetitionPenalty: ptr(1.0), Seed: ptr(uint64(3))}
	const ownJSON = `"temperature":0.1,"top_p":1,"top_k":-1,"min_p":0,"repetition_penalty":1,"presence_penalty":0,"frequency_penalty":0,"seed":3`
	const nullJSON = `"temperature":null,"top_p":null,"top_k":null,"min_p":null,"repetition_penalty":null,"presence_penalty":null,"frequency_penalty":null,"seed":null`
	for _, c := range []struct {
		name, body string
		want       pio.GenerateOptions
	}{
		{"completion, left out", `{"prompt":"x","max_tokens":2}`, defaulted},
		{"chat, left out", `{"messages":[{"role":"user","content":"x"}],"max_tokens":2}`, defaulted},
		{"completion, null", `{"prompt":"x","max_tokens":2,` + nullJSON + `}`, defaulted},
		{"completion, its own", `{"prompt":"x","max_tokens":2,` + ownJSON + `}`, own},
		{"chat, its own", `{"messages":[{"role":"user","content":"x"}],"max_tokens":2,` + ownJSON + `}`, own},
	} {
		got := last(c.body)
		want := c.want
		want.MaxTokens = 2
		if len(got) != 1 {
			t.Fatalf("%s: %d generations", c.name, len(got))
		}
		if diff := cmp.Diff(got[0], want); diff != "" {
			t.Errorf("%s: options (-got +want)\n%s", c.name, diff)
		}
	}
	seeds := map[uint64]bool{}
	for _, o := range last(`{"prompt":"x","max_tokens":2,"n":2}`) {
		if o.Seed != nil {
			seeds[*o.Seed] = true
		}
	}
	if want := splitmix64(maxSeed + 0x9e3779b97f4a7c15); len(seeds) != 2 || !seeds[maxSeed] || !seeds[want] {
		t.Errorf("n=2 with a default seed: seeds %v, want %d and %d", seeds, maxSeed, want)
	}
	// Without defaults a parameter left out stays unset, for the engine's
	// generation_config to decide.
	bare := &optionsEngine{}
	u := httptestServer(t, mustNew(t, bare, Config{}))
	postOK(t, u+"/v1/completions", `{"prompt":"x","max_tokens":2}`)
	if diff := cmp.Diff(bare.got, []pio.GenerateOptions{{MaxTokens: 2}}); diff != "" {
		t.Errorf("no defaults: (-got +want)\n%s", diff)
	}
	for _, c := range []struct {
		d    Defaults
		want string
	}{
		{Defaults{Temperature: ptr(2.5)}, "temperature must be in [0, 2]"},
		{Defaults{Temperature: ptr(math.NaN())}, "temperature"},
		{Defaults{TopP: ptr(0.0)}, "top_p must be in (0, 1]"},
		{Defaults{TopK: ptr(-2)}, "top_k must be -1"},
		{Defaults{MinP: ptr(1.5)}, "min_p"},
		{Defaults{RepetitionPenalty: ptr(0.0)}, "repetition_penalty"},
		{Defaults{PresencePenalty: ptr(3.0)}, "presence_penalty"},
		{Defaults{FrequencyPenalty: ptr(-3.0)}, "frequency_penalty"},
	} {
		if _, err := New(&optionsEngine{}, Config{Defaults: c.d}); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "default") {
			t.Errorf("default out of range: New error %v, want one naming the default (%q)", err, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestDefaultsReadBodyAsSent: Defaults are applied to the parsed request,
// never by rewriting its body (json.Marshal would escape <, > and & as
// \u003c..., six bytes for one), so a body of exactly MaxBodyBytes that is
// full of them is served.
func TestDefaultsReadBodyAsSent(t *testing.T) {
	body := `{"messages":[{"role":"user","content":"` + strings.Repeat("<&>", 300) + `"}],"max_tokens":2}`
	eng := &optionsEngine{}
	url := httptestServer(t, mustNew(t, eng, Config{MaxBodyBytes: int64(len(body)), Defaults: Defaults{Temperature: ptr(0.5), Seed: ptr(uint64(1))}}))
	postOK(t, url+"/v1/chat/completions", body)
	if len(eng.got) != 1 || eng.got[0].Temperature == nil || *eng.got[0].Temperature != 0.5 {
		t.Errorf("options %+v, want the default temperature", eng.got)
	}
}
