package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/inference-pio/pio/frontends/chat"
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
	msgs := func(list string) string { return `{"messages":[` + list + `],"max_tokens":1}` }
	part := func(p string) string { return msgs(`{"role":"user","content":[` + p + `]}`) }
	call := func(c string) string {
		return msgs(`{"role":"user","content":"hi"},{"role":"assistant","content":null,"tool_calls":[` + c + `]}`)
	}
	image := `"image_url":{"url":"data:image/png;base64,iVBORw0KGgo="`
	refused := []struct{ url, body, param string }{
		{chatURL, chat(`,"response_format":{"type":"json"}`), "response_format.type"},
		{chatURL, chat(`,"response_format":{"type":"json_schema"}`), "response_format.json_schema"},
		{chatURL, chat(`,"response_format":{"type":"json_schema","json_schema":{"schema":{}}}`), "response_format.json_schema.name"},
		{chatURL, chat(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","contentEncoding":"base64"}}}`), "response_format.json_schema.schema"},
		{compURL, comp(`,"response_format":{"type":"xml"}`), "response_format.type"},
		{chatURL, chat(`,"tool_choice":"required"`), "tool_choice"},                                                       // no tools
		{chatURL, chat(`,` + tool + `,"tool_choice":{"type":"function","function":{"name":"g"}}`), "tool_choice"},         // not among the tools
		{chatURL, chat(`,` + tool + `,"tool_choice":{"type":"function","function":{}}`), "tool_choice"},                   // no name
		{chatURL, chat(`,` + tool + `,"tool_choice":"required","response_format":{"type":"json_object"}`), "tool_choice"}, // two constraints
		{chatURL, chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","contentEncoding":"base64"}}}}}],"tool_choice":"required"`), "tools[0].function.parameters"},
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
		{chatURL, chat(`,"stream_options":{"include_usage":true}`), "stream_options"}, // without stream: true
		{chatURL, chat(`,"stream":false,"stream_options":{}`), "stream_options"},
		{chatURL, part(`{"type":"text","text":"hi"},{"type":"image_url",` + image + `,"detail":"low"}}`), "messages[0].content[1].image_url.detail"},
		{chatURL, part(`{"type":"image_url",` + image + `,"detail":"high"}}`), "messages[0].content[0].image_url.detail"},
		{chatURL, part(`{"type":"image_url","image_url":{"URL":"data:image/png;base64,iVBORw0KGgo="}}`), "messages[0].content[0].image_url.url"}, // exact names
		{chatURL, part(`{"TYPE":"text","text":"hi"}`), "messages[0].content[0].type"},
		{chatURL, part(`{"type":"text","Text":"hi"}`), "messages[0].content[0].text"},
		{chatURL, part(`{"type":"text","text":5}`), "messages[0].content[0].text"},
		{chatURL, part(`{"type":"text","text":"hi",` + image + `}}`), "messages[0].content[0].image_url"},
		{chatURL, part(`"hi"`), "messages[0].content[0]"},
		{chatURL, call(`{"id":"1","type":"custom","function":{"name":"f","arguments":"{}"}}`), "messages[1].tool_calls[0].type"},
		{chatURL, call(`{"id":"1","type":"function","Function":{"name":"f","arguments":"{}"}}`), "messages[1].tool_calls[0].function"},
		{chatURL, call(`{"id":"1","type":"function","function":{"Name":"f","arguments":"{}"}}`), "messages[1].tool_calls[0].function.name"},
		{chatURL, call(`{"id":"1","type":"function","function":{"name":"f","arguments":{}}}`), "messages[1].tool_calls[0].function.arguments"},
		{chatURL, call(`{"id":1,"type":"function","function":{"name":"f","arguments":"{}"}}`), "messages[1].tool_calls[0].id"},
		{chatURL, chat(`,"tools":[{"type":"function","function":{"Name":"f"}}]`), "tools[0].function.name"},
		{chatURL, chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]`), "tools[0].function.parameters"},
		{chatURL, chat(`,"tools":[{"Type":"function","function":{"name":"f"}}]`), "tools[0]"},
		{chatURL, chat(`,"tools":[5]`), "tools[0]"},
		{chatURL, chat(`,"chat_template_kwargs":{"enable_thinking":1}`), "chat_template_kwargs.enable_thinking"},
		{chatURL, chat(`,"chat_template_kwargs":{"enable_thinking":null}`), "chat_template_kwargs.enable_thinking"},
		{chatURL, chat(`,"chat_template_kwargs":[]`), "chat_template_kwargs"},
		{chatURL, msg(`"audio":{"id":"a1"}`), "messages[0].audio"},
		{chatURL, msg(`"function_call":{"name":"f","arguments":"{}"}`), "messages[0].function_call"},
		{chatURL, msg(`"refusal":"no"`), "messages[0].refusal"}, // with content
		{chatURL, msg(`"name":7`), "messages[0].name"},
		{chatURL, `{"messages":[5]}`, "messages[0]"},
		{compURL, comp(`,"messages":[]`), "messages"},
		{compURL, comp(`,"tools":[]`), "tools"},
		{compURL, comp(`,"tool_choice":"none"`), "tool_choice"},
		{compURL, comp(`,"parallel_tool_calls":false`), "parallel_tool_calls"},
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
		{chatURL, chat(`,"stream":true,"stream_options":{"include_usage":false,"include_obfuscation":true},"logit_bias":{"7":-100,"8":100},"n":2`)},
		{chatURL, chat(`,"stream":false,"stream_options":null,"chat_template_kwargs":{"enable_thinking":false,"n":1,"z":null}`)},
		{chatURL, call(`{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}},{"function":{"name":"g"}}`)},
		{chatURL, chat(`,"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"},"strict":false}}]`)},
		{chatURL, chat(`,"best_of":null,"prompt":null`)},
		{chatURL, msg(`"refusal":null,"audio":null`)},
		{chatURL, `{"messages":[{"role":"assistant","content":null,"refusal":"I can't."},{"role":"user","content":"ok"}],"max_tokens":1}`},
		{compURL, comp(`,"user":"u1","n":2,"best_of":3,"logit_bias":{"5":1},"seed":3,"temperature":1`)},
		{compURL, comp(`,"suffix":"","echo":false,"stream":true,"stream_options":{"include_usage":true},"messages":null,"tool_choice":null`)},
		{compURL, comp(`,"best_of":2,"n":2,"stream":true`)},
		{chatURL, chat(`,"response_format":{"type":"json_object"}`)},
		{chatURL, chat(`,"response_format":{"type":"json_object"},"chat_template_kwargs":{"enable_thinking":true}`)},
		{chatURL, chat(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"},"strict":true}}`)},
		{compURL, comp(`,"response_format":{"type":"json_schema","json_schema":{"name":"x","description":"d","schema":{"enum":[1,2]},"strict":false}}`)},
		{compURL, comp(`,"response_format":{"type":"text"}`)},
	}
	for _, c := range accepted {
		if status, body := post(t, c.url, "", c.body); status != 200 {
			t.Errorf("%s: status %d (%s)", c.body, status, body)
		}
	}
	// Fields neither OpenAI's nor implemented: served, named once each.
	extras := []string{"guided_json", "min_tokens", "Temperature", "messages[].weight", "stream_options.continuous_usage_stats",
		"messages[].content[].cache_control", "messages[].tool_calls[].index", "messages[].tool_calls[].function.x", "tools[].x", "tools[].function.x"}
	body := `{"messages":[{"role":"user","content":[{"type":"text","text":"hi","cache_control":{}}],"weight":2},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","index":0,"function":{"name":"f","arguments":"{}","x":1}}]},` +
		`{"role":"tool","tool_call_id":"1","content":"ok"}],` +
		`"max_tokens":1,"guided_json":{},"min_tokens":3,"Temperature":5,"stream":true,"stream_options":{"continuous_usage_stats":true},` +
		`"tools":[{"type":"function","x":1,"function":{"name":"f","x":2}}]}`
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

// TestExtraFieldsBounded: a client names the extra fields, so neither one
// request (a 20 MiB body holds over a million names) nor many can make the
// server remember or log them without bound: a request adds at most
// maxNamedPerRequest names to the log, the server remembers at most
// maxRememberedFields, then says once that it stops naming them, and a
// long name is logged cut short.
func TestExtraFieldsBounded(t *testing.T) {
	var logBuf syncBuffer
	s := mustNew(t, &optionsEngine{}, Config{Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	url := httptestServer(t, s) + "/v1/chat/completions"
	lines := func() int { return strings.Count(logBuf.String(), "\n") }
	body := func(req, n int) string {
		var b strings.Builder
		b.WriteString(`{"max_tokens":1,"messages":[`)
		for i := range n {
			fmt.Fprintf(&b, `{"role":"user","content":"hi","m%d_%d":1},`, req, i)
		}
		b.WriteString(`{"role":"user","content":"hi"}]`)
		for i := range n {
			fmt.Fprintf(&b, `,"f%d_%d":1`, req, i)
		}
		b.WriteString(`}`)
		return b.String()
	}
	postOK(t, url, `{"messages":[{"role":"user","content":"hi"}],"`+strings.Repeat("x", 5000)+`":1}`)
	postOK(t, url, body(0, 5000))
	if n := lines(); n != 1+maxNamedPerRequest {
		t.Errorf("a long name, then one request with 10000 extra fields: %d log lines, want %d", n, 1+maxNamedPerRequest)
	}
	for req := 1; req < 40; req++ {
		postOK(t, url, body(req, 30))
	}
	logged := logBuf.String()
	if n := lines(); n != maxRememberedFields+1 {
		t.Errorf("%d log lines, want %d: %d names and one line that says no more are named", n, maxRememberedFields+1, maxRememberedFields)
	}
	if n := strings.Count(logged, "further"); n != 1 {
		t.Errorf("the line that says no more are named logged %d times, want once", n)
	}
	if len(s.ignored) > maxRememberedFields {
		t.Errorf("%d names remembered, want at most %d", len(s.ignored), maxRememberedFields)
	}
	for name := range s.ignored {
		if len(name) > maxFieldNameBytes+len("…") {
			t.Errorf("remembered a name of %d bytes", len(name))
		}
	}
	if !strings.Contains(logged, "field="+strings.Repeat("x", maxFieldNameBytes)+"…") {
		t.Errorf("the 5000-byte name is not logged cut to %d bytes", maxFieldNameBytes)
	}
	for _, line := range strings.Split(logged, "\n") {
		if len(line) > 400 {
			t.Errorf("log line of %d bytes", len(line))
		}
	}
}

// TestTemplateKwargs: chat_template_kwargs reach the template as vLLM
// hands them over, decoded by Python's json.loads: 1 an integer, null a
// defined None, an object in its keys' order (chat.TemplateVars); the
// enable_thinking flag is also the template's enable_thinking.
func TestTemplateKwargs(t *testing.T) {
	const tmpl = `n={{n}} z_defined={{z is defined}} z={{z|string}} d={{d|tojson}} items={% for k,v in d|items %}{{k}},{% endfor %}`
	// Python 3, jinja2 3.1.6:
	//   jinja2.Environment().from_string(tmpl).render(**json.loads('{"n":1,"z":null,"d":{"b":1,"a":2}}'))
	const want = `n=1 z_defined=True z=None d={"b": 1, "a": 2} items=b,a,`
	_, msgs, opt, e := parseChat([]byte(`{"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"n":1,"z":null,"d":{"b":1,"a":2},"enable_thinking":false}}`), &Defaults{})
	if e != nil {
		t.Fatal(e)
	}
	if opt.EnableThinking == nil || *opt.EnableThinking {
		t.Errorf("enable_thinking: %v, want false", opt.EnableThinking)
	}
	got, err := chat.Render(tmpl, msgs, chat.Options{Extra: opt.TemplateExtra})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, kw := range []string{`null`, `{}`} {
		if _, _, opt, e := parseChat([]byte(`{"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":`+kw+`}`), &Defaults{}); e != nil || opt.TemplateExtra != nil || opt.EnableThinking != nil {
			t.Errorf("chat_template_kwargs %s: %v, %v, %v", kw, e, opt.TemplateExtra, opt.EnableThinking)
		}
	}
}

// TestImageDetail: image_url.detail "auto", or none, is the resolution the
// engine sees every image at; other values are refused (TestRequestFields).
func TestImageDetail(t *testing.T) {
	for _, detail := range []string{``, `,"detail":null`, `,"detail":"auto"`} {
		body := `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="` + detail + `}}]}]}`
		_, msgs, _, e := parseChat([]byte(body), &Defaults{})
		if e != nil || len(msgs) != 1 || len(msgs[0].Parts) != 1 || msgs[0].Parts[0].Type != "image" {
			t.Errorf("detail %q: %v, %+v", detail, e, msgs)
		}
	}
}
