package server

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/inference-pio/pio/pio"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// apiErrorOf reads an OpenAI error body.
func apiErrorOf(t *testing.T, body string) (msg, param string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	if e.Error.Param != nil {
		param = *e.Error.Param
	}
	return e.Error.Message, param
}

// TestRequestFields goes through OpenAI's chat completions and completions
// request fields: each one this server cannot honour (or a value of it) is
// a 400 whose param and message name it; the harmless ones and the values
// it honours are served; fields of neither kind are served and named once
// in the log.
func TestRequestFields(t *testing.T) {
	var logBuf syncBuffer
	srv, _ := start(t, pio.Options{MaxStepTokens: 32, CacheTokens: 1024}, Config{Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	chatURL, compURL := srv.URL+"/v1/chat/completions", srv.URL+"/v1/completions"
	chat := func(extra string) string {
		return `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1` + extra + `}`
	}
	comp := func(extra string) string { return `{"prompt":"hi","max_tokens":1` + extra + `}` }
	tool := `"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]`
	msg := func(field string) string {
		return `{"messages":[{"role":"user","content":"hi",` + field + `}],"max_tokens":1}`
	}
	refused := []struct{ url, body, param string }{
		{chatURL, chat(`,"response_format":{"type":"json_object"}`), "response_format"},
		{chatURL, chat(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}`), "response_format"},
		{chatURL, chat(`,` + tool + `,"tool_choice":"required"`), "tool_choice"},
		{chatURL, chat(`,` + tool + `,"tool_choice":{"type":"function","function":{"name":"f"}}`), "tool_choice"},
		{chatURL, chat(`,` + tool + `,"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[]}}`), "tool_choice"},
		{chatURL, chat(`,"tool_choice":"sometimes"`), "tool_choice"},
		{chatURL, chat(`,"tools":[{"type":"function","function":{"name":"f","strict":true}}]`), "tools[0].function.strict"},
		{chatURL, chat(`,"tools":[{"type":"custom","custom":{"name":"f"}}]`), "tools[0]"},
		{chatURL, chat(`,"audio":{"voice":"alloy","format":"wav"}`), "audio"},
		{chatURL, chat(`,"modalities":["text","audio"]`), "modalities"},
		{chatURL, chat(`,"prediction":{"type":"content","content":"hi"}`), "prediction"},
		{chatURL, chat(`,"reasoning_effort":"low"`), "reasoning_effort"},
		{chatURL, chat(`,"verbosity":"low"`), "verbosity"},
		{chatURL, chat(`,"web_search_options":{}`), "web_search_options"},
		{chatURL, chat(`,"functions":[{"name":"f"}]`), "functions"},
		{chatURL, chat(`,"function_call":{"name":"f"}`), "function_call"},
		{chatURL, chat(`,"store":true`), "store"},
		{chatURL, chat(`,"service_tier":"flex"`), "service_tier"},
		{chatURL, chat(`,"metadata":{"k":1}`), "metadata"},
		{chatURL, chat(`,"user":5`), "user"},
		{chatURL, chat(`,"best_of":2`), "best_of"},
		{chatURL, chat(`,"prompt":"x"`), "prompt"},
		{chatURL, chat(`,"echo":false`), "echo"},
		{chatURL, chat(`,"suffix":"x"`), "suffix"},
		{chatURL, chat(`,"n":0`), "n"},
		{chatURL, chat(`,"n":17`), "n"},
		{chatURL, chat(`,"temperature":"hot"`), "temperature"},
		{chatURL, chat(`,"logprobs":1`), "logprobs"},
		{chatURL, chat(`,"logit_bias":{"abc":1}`), "logit_bias"},
		{chatURL, chat(`,"logit_bias":{"-1":1}`), "logit_bias"},
		{chatURL, chat(`,"logit_bias":{"05":1}`), "logit_bias"},
		{chatURL, chat(`,"logit_bias":{"5":100.5}`), "logit_bias"},
		{chatURL, chat(`,"logit_bias":{"5":"up"}`), "logit_bias"},
		{chatURL, chat(`,"logit_bias":{"512":1}`), "logit_bias"}, // the tiny vocabulary is 512
		{chatURL, chat(`,"stream_options":{"include_usage":"yes"}`), "stream_options.include_usage"},
		{chatURL, chat(`,"stream_options":[]`), "stream_options"},
		{chatURL, msg(`"audio":{"id":"a1"}`), "messages[0].audio"},
		{chatURL, msg(`"function_call":{"name":"f","arguments":"{}"}`), "messages[0].function_call"},
		{chatURL, msg(`"refusal":"no"`), "messages[0].refusal"}, // with content
		{chatURL, msg(`"name":7`), "messages[0].name"},
		{chatURL, `{"messages":[5]}`, "messages[0]"},
		{compURL, comp(`,"messages":[]`), "messages"},
		{compURL, comp(`,"tools":[]`), "tools"},
		{compURL, comp(`,"tool_choice":"none"`), "tool_choice"},
		{compURL, comp(`,"parallel_tool_calls":false`), "parallel_tool_calls"},
		{compURL, comp(`,"response_format":{"type":"text"}`), "response_format"},
		{compURL, comp(`,"max_completion_tokens":3`), "max_completion_tokens"},
		{compURL, comp(`,"top_logprobs":2`), "top_logprobs"},
		{compURL, comp(`,"reasoning_effort":"low"`), "reasoning_effort"},
		{compURL, comp(`,"modalities":["text"]`), "modalities"},
		{compURL, comp(`,"logprobs":true`), "logprobs"},
		{compURL, comp(`,"best_of":2,"stream":true`), "best_of"},
		{compURL, comp(`,"best_of":1,"n":2`), "best_of"},
		{compURL, comp(`,"best_of":17`), "best_of"},
		{compURL, comp(`,"n":99`), "n"},
		{compURL, comp(`,"echo":true`), "echo"},
		{compURL, comp(`,"suffix":"x"`), "suffix"},
		{compURL, comp(`,"store":true`), "store"},
		{compURL, comp(`,"logit_bias":{"1":-101}`), "logit_bias"},
		{compURL, comp(`,"logit_bias":{"99999":1}`), "logit_bias"},
	}
	for _, c := range refused {
		status, body := post(t, c.url, "", c.body)
		if status != 400 {
			t.Errorf("%s: status %d, want 400 (%s)", c.body, status, body)
			continue
		}
		m, param := apiErrorOf(t, body)
		if param != c.param || !strings.Contains(m, c.param) {
			t.Errorf("%s: param %q message %q; want both to name %q", c.body, param, m, c.param)
		}
	}
	accepted := []struct{ url, body string }{
		{chatURL, chat(`,"user":"u1","safety_identifier":"s","prompt_cache_key":"k","metadata":{"k":"v"},"store":false,"service_tier":"auto"`)},
		{chatURL, chat(`,"service_tier":"default","response_format":{"type":"text"},"modalities":["text"],"audio":null,"prediction":null`)},
		{chatURL, chat(`,"reasoning_effort":null,"verbosity":null,"web_search_options":null,"functions":[],"function_call":"none"`)},
		{chatURL, chat(`,` + tool + `,"tool_choice":"none","parallel_tool_calls":true`)},
		{chatURL, chat(`,` + tool + `,"tool_choice":"auto","parallel_tool_calls":false`)},
		{chatURL, chat(`,"stream_options":{"include_usage":false,"include_obfuscation":true},"logit_bias":{"7":-100,"8":100},"n":2`)},
		{chatURL, chat(`,"best_of":null,"prompt":null`)},
		{chatURL, msg(`"refusal":null,"audio":null`)},
		{chatURL, `{"messages":[{"role":"assistant","content":null,"refusal":"I can't."},{"role":"user","content":"ok"}],"max_tokens":1}`},
		{compURL, comp(`,"user":"u1","n":2,"best_of":3,"logit_bias":{"5":1},"seed":3,"temperature":1`)},
		{compURL, comp(`,"suffix":"","echo":false,"stream_options":{"include_usage":true},"messages":null,"tool_choice":null`)},
		{compURL, comp(`,"best_of":2,"n":2,"stream":true`)},
	}
	for _, c := range accepted {
		if status, body := post(t, c.url, "", c.body); status != 200 {
			t.Errorf("%s: status %d (%s)", c.body, status, body)
		}
	}
	// Fields neither OpenAI's nor implemented: served, named once each.
	extras := []string{"guided_json", "min_tokens", "Temperature", "messages[].weight", "stream_options.continuous_usage_stats"}
	body := `{"messages":[{"role":"user","content":"hi","weight":2}],"max_tokens":1,"guided_json":{},"min_tokens":3,"Temperature":5,` +
		`"stream_options":{"continuous_usage_stats":true}}`
	for i := 0; i < 2; i++ {
		if status, out := post(t, chatURL, "", body); status != 200 {
			t.Fatalf("extras: status %d (%s)", status, out)
		}
	}
	if status, out := post(t, compURL, "", comp(`,"min_tokens":2,"chat_template_kwargs":{}`)); status != 200 {
		t.Fatalf("completion extras: status %d (%s)", status, out)
	}
	logged := logBuf.String()
	for _, f := range append(extras, "chat_template_kwargs") {
		if n := strings.Count(logged, "field="+f+" "); n != 1 {
			t.Errorf("field %s logged %d times, want once:\n%s", f, n, logged)
		}
	}
	for _, f := range []string{"user", "metadata", "max_tokens", "logit_bias"} {
		if strings.Contains(logged, "field="+f+" ") {
			t.Errorf("field %s logged as ignored", f)
		}
	}
}
