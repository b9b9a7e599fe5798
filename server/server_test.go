package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/pio"
)

var (
	engineOnce sync.Once
	enginePath string
	engineErr  error
	tmpDir     string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if tmpDir != "" {
		os.RemoveAll(tmpDir)
	}
	os.Exit(code)
}

// tinyEngine builds testdata/tiny/qwen3-a once per test binary.
func tinyEngine(t testing.TB) string {
	t.Helper()
	engineOnce.Do(func() {
		g, err := golden.Load("qwen3-a")
		if err != nil {
			engineErr = err
			return
		}
		if tmpDir, engineErr = os.MkdirTemp("", "pio-server-test"); engineErr != nil {
			return
		}
		enginePath = filepath.Join(tmpDir, "tiny.pio")
		_, engineErr = compiler.Build(compiler.Options{Source: g.Dir, Output: enginePath, DType: ir.F32})
	})
	if engineErr != nil {
		t.Fatal(engineErr)
	}
	return enginePath
}

// start serves a fresh tiny engine.
func start(t testing.TB, opt pio.Options, cfg Config) (*httptest.Server, *pio.Engine) {
	t.Helper()
	e, err := pio.Load(tinyEngine(t), opt)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ModelName = "tiny"
	srv := httptest.NewServer(mustNew(t, e, cfg).Handler())
	t.Cleanup(func() {
		srv.Close()
		e.Close()
	})
	return srv, e
}

func post(t testing.TB, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one unlabelled sample from /metrics.
func metric(t testing.TB, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("metric %s not in /metrics", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// imageMsg is a chat body with a text part and an image_url part.
func imageMsg(url string) string {
	return `{"messages":[{"role":"user","content":[{"type":"text","text":"What is it?"},{"type":"image_url","image_url":{"url":"` + url + `"}}]}]}`
}

func TestErrors(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 32, CacheTokens: 1024}, Config{APIKey: "sekret", MaxBodyBytes: 2048})
	chat := srv.URL + "/v1/chat/completions"
	comp := srv.URL + "/v1/completions"
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		url, key, body string
		status         int
		param          string
	}{
		{chat, "", `{` + msgs + `}`, 401, ""},
		{chat, "wrong", `{` + msgs + `}`, 401, ""},
		{chat, "sekret", `{`, 400, ""},
		{chat, "sekret", `{"messages": "x"}`, 400, ""},
		{chat, "sekret", `{} {}`, 400, ""},
		{chat, "sekret", `{"messages":[]}`, 400, "messages"},
		{chat, "sekret", `{"messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages[0].role"},
		{chat, "sekret", `{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`, 400, "messages[0].content[0].image_url"},
		{chat, "sekret", `{"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, 400, "messages[0].content[0].type"},
		{chat, "sekret", imageMsg("https://example.com/cat.png"), 400, "messages[0].content[1].image_url.url"},
		{chat, "sekret", imageMsg("data:image/gif;base64,R0lGOD"), 400, "messages[0].content[1].image_url.url"},
		{chat, "sekret", imageMsg("data:image/png,rawbytes"), 400, "messages[0].content[1].image_url.url"},
		{chat, "sekret", imageMsg("data:image/png;base64,%%%not base64"), 400, "messages[0].content[1].image_url.url"},
		{chat, "sekret", imageMsg("data:image/png;base64,"), 400, "messages[0].content[1].image_url.url"},
		{chat, "sekret", imageMsg("data:image/png;base64,iVBORw0KGgo="), 400, ""}, // a text-only engine takes no images
		{chat, "sekret", `{` + msgs + `,"temperature":3}`, 400, "temperature"},
		{chat, "sekret", `{` + msgs + `,"temperature":-1}`, 400, "temperature"},
		{chat, "sekret", `{` + msgs + `,"top_p":0}`, 400, "top_p"},
		{chat, "sekret", `{` + msgs + `,"top_k":-2}`, 400, "top_k"},
		{chat, "sekret", `{` + msgs + `,"max_tokens":0}`, 400, "max_tokens"},
		{chat, "sekret", `{` + msgs + `,"max_completion_tokens":-5}`, 400, "max_tokens"},
		{chat, "sekret", `{` + msgs + `,"n":17}`, 400, "n"},
		{chat, "sekret", `{` + msgs + `,"presence_penalty":2.5}`, 400, "presence_penalty"},
		{chat, "sekret", `{` + msgs + `,"logprobs":true,"top_logprobs":21}`, 400, "top_logprobs"},
		{chat, "sekret", `{` + msgs + `,"top_logprobs":2}`, 400, "top_logprobs"},
		{chat, "sekret", `{` + msgs + `,"stop":[""]}`, 400, "stop"},
		{chat, "sekret", `{` + msgs + `,"stop":5}`, 400, ""},
		{chat, "sekret", `{` + msgs + `,"tools":[{"type":"function"}]}`, 400, "tools[0]"},
		{chat, "sekret", `{` + msgs + `,"tool_choice":"sometimes"}`, 400, "tool_choice"},
		{chat, "sekret", `{` + msgs + `,"model":"gpt-9"}`, 404, ""},
		{chat, "sekret", `{` + msgs + `,"pad":"` + strings.Repeat("x", 4096) + `"}`, 413, ""},
		{comp, "sekret", `{"prompt":""}`, 400, "prompt"},
		{comp, "sekret", `{}`, 400, "prompt"},
		{comp, "sekret", `{"prompt":["a","b"]}`, 400, "prompt"},
		{comp, "sekret", `{"prompt":[1,2,99999]}`, 400, ""},
		{comp, "sekret", `{"prompt":"hi","echo":true}`, 400, "echo"},
		{comp, "sekret", `{"prompt":"hi","logprobs":-1}`, 400, "logprobs"},
		{comp, "sekret", `{"prompt":[` + strings.Repeat("1,", 600) + `1]}`, 400, ""},
		{srv.URL + "/v1/nothing", "sekret", `{}`, 404, ""},
	} {
		status, body := post(t, tc.url, tc.key, tc.body)
		var e struct {
			Error struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
			} `json:"error"`
		}
		short := tc.body[:min(len(tc.body), 60)]
		if status != tc.status {
			t.Errorf("%s: status %d, want %d (%s)", short, status, tc.status, body)
			continue
		}
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Errorf("%s: body %q is not an OpenAI error", short, body)
			continue
		}
		if tc.param != "" && (e.Error.Param == nil || *e.Error.Param != tc.param) {
			t.Errorf("%s: param %v, want %q", short, e.Error.Param, tc.param)
		}
	}
	// /health and /metrics need no key; /v1/models does.
	for path, want := range map[string]int{"/health": 200, "/metrics": 200, "/v1/models": 401} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// TestPrefixCacheThroughMetrics sends a prompt, then one sharing its first
// blocks: the second prefills fewer tokens than its length, as /metrics and
// usage.prompt_tokens_details report.
func TestPrefixCacheThroughMetrics(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 64, CacheTokens: 1024, BlockSize: 16}, Config{})
	ids := func(n, base int) string {
		var s []string
		for i := 0; i < n; i++ {
			s = append(s, strconv.Itoa((base+i*13)%500))
		}
		return strings.Join(s, ",")
	}
	shared := ids(48, 1)
	req := func(prompt string) map[string]any {
		status, body := post(t, srv.URL+"/v1/completions", "", `{"prompt":[`+prompt+`],"max_tokens":2,"temperature":0}`)
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		var r map[string]any
		json.Unmarshal([]byte(body), &r)
		return r["usage"].(map[string]any)
	}
	req(shared + "," + ids(10, 7))
	before := metric(t, srv.URL, "pio_prefill_tokens_total")
	fromLogits := metric(t, srv.URL, "pio_tokens_from_logits_total")
	u := req(shared + "," + ids(20, 300))
	prefilled := metric(t, srv.URL, "pio_prefill_tokens_total") - before
	// The CPU backend offers neither argmax nor candidates: both tokens
	// come from its logits.
	if n := metric(t, srv.URL, "pio_tokens_from_logits_total") - fromLogits; n != 2 {
		t.Errorf("tokens from logits %v, want 2", n)
	}
	if n := metric(t, srv.URL, "pio_tokens_from_candidates_total"); n != 0 {
		t.Errorf("tokens from candidates %v on the CPU backend", n)
	}
	if prefilled != 68-48 {
		t.Errorf("second request prefilled %v tokens, want %d (48 cached)", prefilled, 68-48)
	}
	if c := u["prompt_tokens_details"].(map[string]any)["cached_tokens"].(float64); c != 48 {
		t.Errorf("usage cached_tokens %v, want 48", c)
	}
	if r := metric(t, srv.URL, "pio_prefix_cache_hit_rate"); r <= 0 {
		t.Errorf("hit rate %v", r)
	}
}

// readEvent reads one SSE data line.
func readEvent(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			return s, nil
		}
	}
}

func TestDisconnectFreesBlocks(t *testing.T) {
	srv, e := start(t, pio.Options{MaxStepTokens: 16, CacheTokens: 1024}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/completions",
		strings.NewReader(`{"prompt":[1,2,3,4,5],"max_tokens":480,"ignore_eos":true,"temperature":0,"stream":true}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readEvent(bufio.NewReader(resp.Body)); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Running != 1 || st.FreeBlocks == st.NumBlocks {
		t.Fatalf("streaming request not running: %+v", st)
	}
	cancel()
	resp.Body.Close()
	waitFor(t, "blocks to be freed", func() bool {
		st := e.Stats()
		return st.Running == 0 && st.Waiting == 0 && st.FreeBlocks == st.NumBlocks
	})
	if st := e.Stats(); st.GeneratedTokens >= 480 {
		t.Errorf("the request ran to the end (%d tokens) instead of being cancelled", st.GeneratedTokens)
	}
}

func TestQueueFull429(t *testing.T) {
	srv, e := start(t, pio.Options{MaxStepTokens: 16, MaxSeqs: 1, MaxQueue: 1, CacheTokens: 1024}, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"prompt":[1,2,3],"max_tokens":480,"ignore_eos":true,"stream":true}`
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/completions", strings.NewReader(body))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		waitFor(t, fmt.Sprintf("request %d to be queued", i), func() bool {
			st := e.Stats()
			return st.Running+st.Waiting == i+1
		})
	}
	status, out := post(t, srv.URL+"/v1/completions", "", body)
	if status != 429 || !strings.Contains(out, "rate_limit_error") {
		t.Errorf("third request: %d %s, want 429", status, out)
	}
	cancel()
	wg.Wait()
	waitFor(t, "idle", func() bool { st := e.Stats(); return st.Running+st.Waiting == 0 && st.FreeBlocks == st.NumBlocks })
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"}],"temperature":0.5,"stop":["a"],"tools":[{"type":"function","function":{"name":"f"}}]}`))
	f.Add([]byte(`{"prompt":[1,2],"logprobs":3,"max_tokens":4}`))
	f.Add([]byte(`{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]}],"chat_template_kwargs":{"enable_thinking":false}}`))
	f.Add([]byte(imageMsg("data:image/png;base64,iVBORw0KGgo=")))
	f.Add([]byte(imageMsg("data:image/jpeg;base64,/9j/4AAQ")))
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi","refusal":null}],"n":3,"logit_bias":{"5":-100,"7":100},"parallel_tool_calls":false,"tool_choice":"none","stream_options":{"include_usage":true}}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"},"tool_choice":{"type":"function","function":{"name":"f"}},"audio":{},"store":true}`))
	f.Add([]byte(`{"prompt":"hi","n":2,"best_of":4,"logit_bias":{"1":1e400},"user":"u","metadata":{"a":"b"},"guided_json":{},"Temperature":1}`))
	f.Add([]byte(`{"prompt":[[1,2]],"best_of":3,"stream":true,"logit_bias":{"-0":5},"stream_options":{"x":1}}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"a","x":1},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"auto"}}]},` +
		`{"role":"assistant","tool_calls":[{"id":"1","function":{"name":"f","arguments":"{}"},"y":2}]}],` +
		`"tools":[{"type":"function","function":{"name":"f","parameters":{},"z":3}}],"chat_template_kwargs":{"n":1,"d":{"b":null,"a":[1.5]}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if req, msgs, opt, e := parseChat(body, &Defaults{}); e == nil {
			checkOptions(t, opt.GenerateOptions)
			checkParams(t, &req.samplingParams)
			for _, m := range msgs {
				for _, p := range m.Parts {
					if (p.Type == "image") != (len(p.Image) > 0) || (p.Type != "image" && p.Type != "text") {
						t.Errorf("accepted part %q with %d image bytes", p.Type, len(p.Image))
					}
				}
			}
		} else if e.status != 400 || e.Message == "" {
			t.Errorf("chat: error %+v", e)
		}
		if req, text, ids, opt, e := parseCompletion(body, &Defaults{}); e == nil {
			if text == "" && len(ids) == 0 {
				t.Errorf("completion accepted with no prompt")
			}
			checkOptions(t, opt)
			checkParams(t, &req.samplingParams)
			if req.bestOf < req.n || req.bestOf > maxChoices || req.bestOf > req.n && req.Stream {
				t.Errorf("accepted best_of %d with n %d, stream %v", req.bestOf, req.n, req.Stream)
			}
		} else if e.status != 400 || e.Message == "" {
			t.Errorf("completion: error %+v", e)
		}
	})
}

// checkOptions asserts that accepted options (logit bias included) are in
// range.
func checkOptions(t *testing.T, o pio.GenerateOptions) {
	t.Helper()
	if o.MaxTokens < 0 || o.TopLogprobs < 0 || o.TopLogprobs > 20 || (o.Temperature != nil && (*o.Temperature < 0 || *o.Temperature > 2)) ||
		(o.TopP != nil && (*o.TopP <= 0 || *o.TopP > 1)) || (o.TopK != nil && *o.TopK < 0) || o.PresencePenalty < -2 || o.PresencePenalty > 2 {
		t.Errorf("accepted options out of range: %+v", o)
	}
	for _, s := range o.Stop {
		if s == "" {
			t.Errorf("accepted an empty stop string")
		}
	}
	for id, b := range o.LogitBias {
		if id < 0 || !(b >= -100 && b <= 100) {
			t.Errorf("accepted logit_bias %d: %v", id, b)
		}
	}
}

// checkParams asserts that an accepted request's choices are in range and
// its extra field names bounded.
func checkParams(t *testing.T, p *samplingParams) {
	t.Helper()
	if p.n < 1 || p.n > maxChoices {
		t.Errorf("accepted n = %d", p.n)
	}
	if len(p.extras.names) > maxRememberedFields {
		t.Errorf("%d extra field names collected", len(p.extras.names))
	}
	for _, n := range p.extras.names {
		if len(n) > maxFieldNameBytes+len("…") {
			t.Errorf("extra field name of %d bytes collected", len(n))
		}
	}
}

// mustNew is New, failing the test on an error.
func mustNew(t testing.TB, e Engine, cfg Config) *Server {
	t.Helper()
	s, err := New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func httptestServer(t testing.TB, s *Server) string {
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}
