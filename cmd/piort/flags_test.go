package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/scheduler"
)

// parsers are the commands' option parsers, each a pure function of the
// cli.Context; every command of the app must have one.
var parsers = map[string]func(*cli.Context) (any, error){
	"run":   anyParser(parseRun),
	"serve": anyParser(parseServe),
	"load":  anyParser(parseLoad),
	"bench": anyParser(parseBench),
}

func anyParser[T any](f func(*cli.Context) (T, error)) func(*cli.Context) (any, error) {
	return func(c *cli.Context) (any, error) { return f(c) }
}

// parseArgs runs command name's parser on args, as the command line
// `piort name args...` would, without the command's action.
func parseArgs(name string, args ...string) (any, error) {
	return cliargs.Parse(newApp(), name, args, parsers[name])
}

// flagCase says where one flag's value must arrive: set (the flag and
// its value) must change field from the command's default to want.
type flagCase struct {
	set   []string
	field func(cfg any) any
	want  any
	alone bool     // set replaces the ENGINE argument (load --url)
	also  []string // flags whose fields set changes too
}

func val[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// engineCases are the engine flags' cases for a command whose options
// hold an engineConfig.
func engineCases(ec func(any) engineConfig, batching bool) map[string]flagCase {
	m := map[string]flagCase{
		"threads":          {set: []string{"--threads", "3"}, field: func(c any) any { return ec(c).opt.Threads }, want: 3},
		"max-step-tokens":  {set: []string{"--max-step-tokens", "64"}, field: func(c any) any { return ec(c).opt.MaxStepTokens }, want: 64},
		"cache-tokens":     {set: []string{"--cache-tokens", "1000"}, field: func(c any) any { return ec(c).opt.CacheTokens }, want: 1000},
		"block-size":       {set: []string{"--block-size", "8"}, field: func(c any) any { return ec(c).opt.BlockSize }, want: 8},
		"verify":           {set: []string{"--verify"}, field: func(c any) any { return ec(c).opt.VerifyWeights }, want: true},
		"max-image-tokens": {set: []string{"--max-image-tokens", "100"}, field: func(c any) any { return ec(c).opt.MaxImageTokens }, want: 100},
		"device":           {set: []string{"--device", "cuda:1"}, field: func(c any) any { return ec(c).device }, want: "cuda:1"},
	}
	if batching {
		m["max-seqs"] = flagCase{set: []string{"--max-seqs", "5"}, field: func(c any) any { return ec(c).opt.MaxSeqs }, want: 5}
		m["max-queue"] = flagCase{set: []string{"--max-queue", "7"}, field: func(c any) any { return ec(c).opt.MaxQueue }, want: 7}
	}
	return m
}

// sampleCases are the sampling flags' cases for a command whose options
// hold a pio.GenerateOptions or a server.Defaults (serve's).
func sampleCases(g func(any) any) map[string]flagCase {
	gen := func(c any) reflect.Value { return reflect.ValueOf(g(c)) }
	field := func(name string) func(any) any {
		return func(c any) any {
			f := gen(c).FieldByName(name)
			if f.Kind() == reflect.Pointer {
				if f.IsNil() {
					return nil
				}
				return f.Elem().Interface()
			}
			return f.Interface()
		}
	}
	return map[string]flagCase{
		"temperature":        {set: []string{"--temperature", "0.5"}, field: field("Temperature"), want: 0.5},
		"top-p":              {set: []string{"--top-p", "0.9"}, field: field("TopP"), want: 0.9},
		"top-k":              {set: []string{"--top-k", "5"}, field: field("TopK"), want: 5},
		"min-p":              {set: []string{"--min-p", "0.1"}, field: field("MinP"), want: 0.1},
		"repetition-penalty": {set: []string{"--repetition-penalty", "1.3"}, field: field("RepetitionPenalty"), want: 1.3},
		"presence-penalty":   {set: []string{"--presence-penalty", "0.5"}, field: field("PresencePenalty"), want: 0.5},
		"frequency-penalty":  {set: []string{"--frequency-penalty", "-0.5"}, field: field("FrequencyPenalty"), want: -0.5},
		"seed":               {set: []string{"--seed", "42"}, field: field("Seed"), want: uint64(42)},
	}
}

func merge(ms ...map[string]flagCase) map[string]flagCase {
	out := map[string]flagCase{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// flagTable maps every flag of every command to the option it sets.
func flagTable() map[string]map[string]flagCase {
	run := func(c any) runConfig { return c.(runConfig) }
	serve := func(c any) serveConfig { return c.(serveConfig) }
	load := func(c any) loadConfig { return c.(loadConfig) }
	bench := func(c any) benchOptions { return c.(benchOptions) }
	return map[string]map[string]flagCase{
		"run": merge(map[string]flagCase{
			"prompt":     {set: []string{"--prompt", "hi"}, field: func(c any) any { return val(run(c).prompt) }, want: "hi"},
			"raw":        {set: []string{"--raw", "-p", "hi"}, field: func(c any) any { return run(c).raw }, want: true, also: []string{"prompt"}},
			"system":     {set: []string{"--system", "be brief"}, field: func(c any) any { return run(c).system }, want: "be brief"},
			"no-think":   {set: []string{"--no-think"}, field: func(c any) any { return run(c).noThink }, want: true},
			"prompt-ids": {set: []string{"--prompt-ids", "1, 2"}, field: func(c any) any { return run(c).promptIDs }, want: []int32{1, 2}, also: []string{"temperature", "max-tokens"}},
			"image":      {set: []string{"--image", "a.png", "--image", "b.png"}, field: func(c any) any { return run(c).images }, want: []string{"a.png", "b.png"}},
			"max-tokens": {set: []string{"--max-tokens", "7"}, field: func(c any) any { return run(c).gen.MaxTokens }, want: 7},
		}, sampleCases(func(c any) any { return run(c).gen }), engineCases(func(c any) engineConfig { return run(c).engine }, false)),
		"serve": merge(map[string]flagCase{
			"addr":           {set: []string{"--addr", "0.0.0.0:9"}, field: func(c any) any { return serve(c).addr }, want: "0.0.0.0:9"},
			"api-key":        {set: []string{"--api-key", "k"}, field: func(c any) any { return serve(c).server.APIKey }, want: "k"},
			"model-name":     {set: []string{"--model-name", "m"}, field: func(c any) any { return serve(c).server.ModelName }, want: "m"},
			"max-body-bytes": {set: []string{"--max-body-bytes", "1000"}, field: func(c any) any { return serve(c).server.MaxBodyBytes }, want: int64(1000)},
			"drain-timeout":  {set: []string{"--drain-timeout", "3s"}, field: func(c any) any { return serve(c).drain }, want: 3 * time.Second},
		}, sampleCases(func(c any) any { return serve(c).server.Defaults }), engineCases(func(c any) engineConfig { return serve(c).engine }, true)),
		"load": merge(map[string]flagCase{
			"url":         {set: []string{"--url", "http://h:1/"}, alone: true, field: func(c any) any { return load(c).url }, want: "http://h:1"},
			"api-key":     {set: []string{"--api-key", "k"}, field: func(c any) any { return load(c).apiKey }, want: "k"},
			"concurrency": {set: []string{"-c", "3"}, field: func(c any) any { return load(c).concurrency }, want: 3},
			"duration":    {set: []string{"--duration", "2s"}, field: func(c any) any { return load(c).duration }, want: 2 * time.Second},
			"max-tokens":  {set: []string{"--max-tokens", "9"}, field: func(c any) any { return load(c).maxTokens }, want: 9},
			"endpoint":    {set: []string{"--endpoint", "completions"}, field: func(c any) any { return load(c).endpoint }, want: "completions"},
		}, sampleCases(func(c any) any { return load(c).sample }), engineCases(func(c any) engineConfig { return load(c).engine }, true)),
		"bench": {
			"prompt":          {set: []string{"--prompt", "5"}, field: func(c any) any { return bench(c).prompt }, want: 5},
			"decode":          {set: []string{"--decode", "6"}, field: func(c any) any { return bench(c).decode }, want: 6},
			"batch":           {set: []string{"--batch", "2"}, field: func(c any) any { return bench(c).batch }, want: 2},
			"runs":            {set: []string{"--runs", "1"}, field: func(c any) any { return bench(c).runs }, want: 1},
			"ref":             {set: []string{"--ref", "r.pio"}, field: func(c any) any { return bench(c).ref }, want: "r.pio"},
			"json":            {set: []string{"--json"}, field: func(c any) any { return bench(c).json }, want: true},
			"cpuprofile":      {set: []string{"--cpuprofile", "p.out"}, field: func(c any) any { return bench(c).cpuprofile }, want: "p.out"},
			"threads":         {set: []string{"--threads", "3"}, field: func(c any) any { return bench(c).threads }, want: 3},
			"max-step-tokens": {set: []string{"--max-step-tokens", "64"}, field: func(c any) any { return bench(c).maxStep }, want: 64},
			"block-size":      {set: []string{"--block-size", "8"}, field: func(c any) any { return bench(c).blockSize }, want: 8},
			"device":          {set: []string{"--device", "cuda:1"}, field: func(c any) any { return bench(c).device }, want: "cuda:1"},
		},
	}
}

// TestEveryFlagArrives walks every flag of every command: set to a value
// other than its default, the flag must change the option the table
// names to that value, and no other flag's option. A flag without a
// table entry fails, as does an entry without a flag.
func TestEveryFlagArrives(t *testing.T) {
	t.Setenv("PIO_API_KEY", "")
	os.Unsetenv("PIO_API_KEY")
	table := flagTable()
	for _, cmd := range newApp().Commands {
		if parsers[cmd.Name] == nil {
			t.Errorf("%s: no option parser in the test's parsers", cmd.Name)
			continue
		}
		cases := table[cmd.Name]
		base, err := parseArgs(cmd.Name, "e.pio")
		if err != nil {
			t.Errorf("%s e.pio: %v", cmd.Name, err)
			continue
		}
		seen := map[string]bool{}
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			seen[name] = true
			c, ok := cases[name]
			if !ok {
				t.Errorf("%s --%s: no entry in flagTable: say which option it sets", cmd.Name, name)
				continue
			}
			args := c.set
			if !c.alone {
				args = append(slices.Clone(c.set), "e.pio")
			}
			got, err := parseArgs(cmd.Name, args...)
			if err != nil {
				t.Errorf("%s %v: %v", cmd.Name, args, err)
				continue
			}
			if v := c.field(base); reflect.DeepEqual(v, c.want) {
				t.Errorf("%s --%s: the default already is %v; test a value that differs", cmd.Name, name, v)
			}
			if v := c.field(got); !reflect.DeepEqual(v, c.want) {
				t.Errorf("%s %v: option is %#v, want %#v", cmd.Name, args, v, c.want)
			}
			for other, oc := range cases {
				if other == name || slices.Contains(c.also, other) {
					continue
				}
				if a, b := oc.field(got), oc.field(base); !reflect.DeepEqual(a, b) {
					t.Errorf("%s %v also changed --%s's option: %#v, default %#v", cmd.Name, args, other, a, b)
				}
			}
		}
		for name := range cases {
			if !seen[name] {
				t.Errorf("%s: flagTable has --%s, which the command does not offer", cmd.Name, name)
			}
		}
	}
}

// The engine and sampling flags are one definition wherever they are
// offered: each command that has one has the shared name, default and
// usage, and run, serve and load have them all.
func TestSharedFlagsAgree(t *testing.T) {
	shared := map[string]string{}
	for _, f := range append(engineFlags(true), sampleFlags()...) {
		shared[f.Names()[0]] = f.String()
	}
	for _, cmd := range newApp().Commands {
		has := map[string]bool{}
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			if want, ok := shared[name]; ok {
				has[name] = true
				if f.String() != want {
					t.Errorf("%s --%s is not the shared flag:\n%s\nwant\n%s", cmd.Name, name, f.String(), want)
				}
			}
		}
		if cmd.Name != "bench" && len(has) < len(shared)-2 { // run has no batching flags
			t.Errorf("%s offers %d of the %d shared flags", cmd.Name, len(has), len(shared))
		}
	}
}

// Values out of range are refused with an error naming the flag.
func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		cmd  string
		args []string
		want string
	}{
		{"run", []string{"--top-p", "-0.1"}, "--top-p must be in (0, 1]"},
		{"run", []string{"--top-p", "0"}, "--top-p must be in (0, 1]"},
		{"run", []string{"--top-p", "NaN"}, "--top-p must be in"},
		{"run", []string{"--top-k", "-1"}, "--top-k must be >= 0"},
		{"run", []string{"--temperature", "2.5"}, "--temperature must be in [0, 2]"},
		{"run", []string{"--min-p", "1.5"}, "--min-p must be in [0, 1]"},
		{"run", []string{"--repetition-penalty", "0"}, "--repetition-penalty must be in (0, 2]"},
		{"run", []string{"--presence-penalty", "2.5"}, "--presence-penalty must be in [-2, 2]"},
		{"run", []string{"--frequency-penalty", "-3"}, "--frequency-penalty must be in [-2, 2]"},
		{"run", []string{"--max-tokens", "-1"}, "--max-tokens must be >= 0"},
		{"run", []string{"--cache-tokens", "8"}, "--cache-tokens 8 is less than one block (--block-size 16)"},
		{"run", []string{"--cache-tokens", "0"}, "--cache-tokens must be >= 1"},
		{"run", []string{"--block-size", "0"}, "--block-size must be >= 1"},
		{"run", []string{"--max-step-tokens", "0"}, "--max-step-tokens must be >= 1"},
		{"run", []string{"--threads", "-1"}, "--threads must be >= 0"},
		{"run", []string{"--max-image-tokens", "0"}, "--max-image-tokens must be >= 1"},
		{"run", []string{"--device", "gpu"}, "--device"},
		{"run", []string{"--device", "cuda", "--threads", "2"}, "--threads applies to --device cpu only"},
		{"run", []string{"--prompt-ids", "1", "--raw"}, "--raw applies to text prompts"},
		{"run", []string{"--prompt-ids", "1", "-p", "x"}, "--prompt applies to text prompts"},
		{"run", []string{"--prompt-ids", "1", "--system", "s"}, "--system applies to text prompts"},
		{"run", []string{"--prompt-ids", "1", "--no-think"}, "--no-think applies to text prompts"},
		{"run", []string{"--prompt-ids", "x"}, "--prompt-ids"},
		{"run", []string{"--raw"}, "--raw needs --prompt"},
		{"run", []string{"--raw", "-p", "x", "--system", "s"}, "--system applies to chat, not --raw"},
		{"run", []string{"--raw", "-p", "x", "--no-think"}, "--no-think applies to chat, not --raw"},
		{"run", []string{"--temperature", "0", "--top-p", "0.5"}, "--top-p has no effect: decoding is greedy (--temperature 0)"},
		{"run", []string{"--prompt-ids", "1", "--seed", "3"}, "--seed has no effect: decoding is greedy (--prompt-ids decodes greedily unless --temperature is given)"},
		{"run", []string{"--prompt-ids", "1", "--top-k", "3"}, "--top-k has no effect"},
		{"serve", []string{"--max-seqs", "0"}, "--max-seqs must be >= 1"},
		{"serve", []string{"--max-seqs", "300"}, "--max-seqs 300 exceeds --max-step-tokens 256"},
		{"serve", []string{"--max-queue", "0"}, "--max-queue must be >= 1"},
		{"serve", []string{"--max-body-bytes", "0"}, "--max-body-bytes must be >= 1"},
		{"serve", []string{"--drain-timeout", "-1s"}, "--drain-timeout must be >= 0"},
		{"serve", []string{"--top-k", "-2"}, "--top-k must be >= 0"},
		{"load", []string{"--temperature", "0", "--min-p", "0.1"}, "--min-p has no effect"},
		{"load", []string{"--cache-tokens", "3"}, "--cache-tokens 3 is less than one block"},
		{"load", []string{"--endpoint", "x"}, "--endpoint must be chat or completions"},
		{"load", []string{"--concurrency", "0"}, "--concurrency, --max-tokens and --duration must be positive"},
		{"bench", []string{"--threads", "-1"}, "--threads must be >= 0"},
		{"bench", []string{"--prompt", "0"}, "--prompt, --decode, --batch and --runs must be >= 1"},
		{"bench", []string{"--device", "cuda", "--block-size", "8"}, "--block-size applies to --device cpu only"},
		{"bench", []string{"--device", "cuda", "--max-step-tokens", "8"}, "--max-step-tokens applies to --device cpu only"},
		{"bench", []string{"--device", "cuda:0", "--threads", "2"}, "--threads applies to --device cpu only"},
	} {
		_, err := parseArgs(c.cmd, append(slices.Clone(c.args), "e.pio")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: error %v, want one saying %q", c.cmd, c.args, err, c.want)
		}
	}
	// load with --url: the flags that size an in-process engine do not apply.
	for _, args := range [][]string{
		{"--url", "http://h:1", "--cache-tokens", "100"},
		{"--url", "http://h:1", "--device", "cuda"},
		{"--url", "http://h:1", "--verify"},
		{"--url", "http://h:1", "--max-seqs", "2"},
	} {
		_, err := parseArgs("load", args...)
		if err == nil || !strings.Contains(err.Error(), "sizes an in-process ENGINE") || !strings.Contains(err.Error(), args[2]) {
			t.Errorf("load %v: error %v, want one naming %s", args, err, args[2])
		}
	}
	if _, err := parseArgs("load", "--url", "http://h:1", "e.pio"); err == nil || !strings.Contains(err.Error(), "either --url or one ENGINE") {
		t.Errorf("load --url with an ENGINE: error %v", err)
	}
}

// serve's sampling flags are the server's defaults (server.Config.Defaults)
// for requests that leave a parameter out: through a running serve, a
// request without them is generated with the flags' values (the seed's
// full 64 bits), a request's own value wins, and a flag not given sets
// nothing.
func TestServeDefaults(t *testing.T) {
	cfg, err := parseArgs("serve", "--temperature", "0.5", "--top-k", "3", "--presence-penalty", "1", "--seed", "18446744073709551615", "e.pio")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordEngine{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, rec, cfg.(serveConfig).server, time.Second) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	url := "http://" + ln.Addr().String()
	for _, c := range []struct {
		path, body string
		want       pio.GenerateOptions
	}{
		{"/v1/completions", `{"prompt":"x","max_tokens":2}`,
			pio.GenerateOptions{MaxTokens: 2, Temperature: ptr(0.5), TopK: ptr(3), PresencePenalty: 1, Seed: ptr(uint64(math.MaxUint64))}},
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"max_tokens":2,"temperature":0.1,"top_k":-1,"presence_penalty":0,"seed":5}`,
			pio.GenerateOptions{MaxTokens: 2, Temperature: ptr(0.1), TopK: ptr(0), Seed: ptr(uint64(5))}},
	} {
		resp, err := http.Post(url+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.path, resp.StatusCode, b)
		}
		rec.mu.Lock()
		got := rec.last
		rec.mu.Unlock()
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %s: generated with %s, want %s", c.path, c.body, show(got), show(c.want))
		}
	}
}

// recordEngine is a server.Engine that records the options of the last
// generation and answers "ok".
type recordEngine struct {
	mu   sync.Mutex
	last pio.GenerateOptions
}

func (r *recordEngine) Name() string                   { return "m" }
func (r *recordEngine) MaxModelLen() int               { return 100 }
func (r *recordEngine) Stats() scheduler.Stats         { return scheduler.Stats{} }
func (r *recordEngine) Encode(string) ([]int32, error) { return []int32{1}, nil }

func (r *recordEngine) GenerateIDs(ctx context.Context, prompt []int32, opt pio.GenerateOptions, fn func(pio.Chunk)) (pio.Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = opt
	return pio.Result{Text: "ok", FinishReason: "stop", PromptTokens: 1}, nil
}

func (r *recordEngine) Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error) {
	res, err := r.GenerateIDs(ctx, nil, opt.GenerateOptions, nil)
	out := pio.ChatResult{Result: res}
	out.Role, out.Content = "assistant", res.Text
	return out, err
}

// show spells out o's sampling pointers for a failure message.
func show(o pio.GenerateOptions) string {
	p := func(v any) string {
		rv := reflect.ValueOf(v)
		if rv.IsNil() {
			return "nil"
		}
		return fmt.Sprint(rv.Elem().Interface())
	}
	return fmt.Sprintf("{max_tokens %d, temperature %s, top_p %s, top_k %s, min_p %s, repetition_penalty %s, presence %v, frequency %v, seed %s}",
		o.MaxTokens, p(o.Temperature), p(o.TopP), p(o.TopK), p(o.MinP), p(o.RepetitionPenalty), o.PresencePenalty, o.FrequencyPenalty, p(o.Seed))
}

func ptr[T any](v T) *T { return &v }

// sampleParams writes the sampling flags set as OpenAI request parameters
// (load's requests), the seed as the int64 of its bits.
func TestSampleParams(t *testing.T) {
	cfg, err := parseArgs("load", "--top-k", "3", "--presence-penalty", "1", "--seed", "18446744073709551615", "e.pio")
	if err != nil {
		t.Fatal(err)
	}
	if p := sampleParams(cfg.(loadConfig).sample); !reflect.DeepEqual(p, map[string]any{"top_k": 3, "presence_penalty": 1.0, "seed": int64(-1)}) {
		t.Errorf("sampleParams: %v", p)
	}
}

// load's sampling flags go into every request, with the seed of client
// w's request i at --seed + 1000·w + i.
func TestLoadRequestSampling(t *testing.T) {
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewDecoder(r.Body).Decode(&body)
		io.WriteString(w, "data: {\"choices\":[{\"text\":\"a\"}],\"usage\":{\"completion_tokens\":2}}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	cfg, err := parseArgs("load", "--url", srv.URL, "--max-tokens", "2", "--endpoint", "completions", "--top-p", "0.5", "--top-k", "4", "--frequency-penalty", "1", "--seed", "10")
	if err != nil {
		t.Fatal(err)
	}
	if res := loadRequest(srv.Client(), srv.URL, cfg.(loadConfig), 2, 3); res.err != nil {
		t.Fatal(res.err)
	}
	want := map[string]any{"top_p": 0.5, "top_k": 4.0, "frequency_penalty": 1.0, "seed": 2013.0, "max_tokens": 2.0}
	for k, v := range want {
		if body[k] != v {
			t.Errorf("request %s = %v, want %v (body %v)", k, body[k], v, body)
		}
	}
	for _, k := range []string{"temperature", "min_p", "repetition_penalty", "presence_penalty"} {
		if _, ok := body[k]; ok {
			t.Errorf("request carries %s, which no flag set: %v", k, body)
		}
	}
}
