package chat

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// conversation is one case of testdata/tokenizer/conversations.json.
type conversation struct {
	Name                string            `json:"name"`
	AddGenerationPrompt bool              `json:"add_generation_prompt"`
	EnableThinking      *bool             `json:"enable_thinking"`
	Tools               []json.RawMessage `json:"tools"`
	Messages            []struct {
		Role             string `json:"role"`
		Content          string `json:"content"`
		ReasoningContent string `json:"reasoning_content"`
		ToolCallID       string `json:"tool_call_id"`
		Name             string `json:"name"`
		ToolCalls        []struct {
			ID       string `json:"id"`
			Type     string `json:"type"`
			Function struct {
				Name      string          `json:"name"`
				Arguments json.RawMessage `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
}

func (c conversation) messages() []Message {
	var out []Message
	for _, m := range c.Messages {
		msg := Message{Role: m.Role, Content: m.Content, ReasoningContent: m.ReasoningContent, ToolCallID: m.ToolCallID, Name: m.Name}
		for _, tc := range m.ToolCalls {
			var call ToolCall
			call.ID, call.Type = tc.ID, tc.Type
			call.Function.Name = tc.Function.Name
			call.Function.Arguments = string(tc.Function.Arguments) // JSON text, as OpenAI clients send it
			msg.ToolCalls = append(msg.ToolCalls, call)
		}
		out = append(out, msg)
	}
	return out
}

func readJSON[T any](t *testing.T, path string) T {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// qwen3Template is Qwen3's chat template. The tiny tokenizer carries it verbatim; when the real
// tokenizer is fetched (make tokenizer-data) the test checks the two are the same text.
func qwen3Template(t *testing.T) string {
	cfg := readJSON[map[string]any](t, "../../testdata/tokenizer/tiny/tokenizer_config.json")
	tmpl := cfg["chat_template"].(string)
	if b, err := os.ReadFile("../../testdata/tokenizers/qwen3/tokenizer_config.json"); err == nil {
		var real struct {
			ChatTemplate string `json:"chat_template"`
		}
		if err := json.Unmarshal(b, &real); err != nil {
			t.Fatal(err)
		}
		if real.ChatTemplate != tmpl {
			t.Fatal("the tiny tokenizer's chat template differs from the real Qwen3 one: run `make tokenizer-golden`")
		}
	}
	return tmpl
}

// TestQwen3Parity renders every conversation and compares with transformers' apply_chat_template.
func TestQwen3Parity(t *testing.T) {
	tmpl := qwen3Template(t)
	cases := readJSON[[]conversation](t, "../../testdata/tokenizer/conversations.json")
	want := readJSON[[]struct{ Name, Text string }](t, "../../testdata/tokenizer/chat_expected.json")
	if len(want) != len(cases) {
		t.Fatalf("chat_expected.json has %d cases, conversations.json %d: run `make tokenizer-golden`", len(want), len(cases))
	}
	same := 0
	for i, c := range cases {
		got, err := Render(tmpl, c.messages(), Options{AddGenerationPrompt: c.AddGenerationPrompt, EnableThinking: c.EnableThinking, Tools: c.Tools})
		if err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if got != want[i].Text {
			t.Errorf("%s: rendering differs from transformers\n got: %q\nwant: %q", c.Name, got, want[i].Text)
			continue
		}
		same++
	}
	t.Logf("%d/%d conversations byte-identical to transformers' apply_chat_template", same, len(cases))
}

func TestToJSON(t *testing.T) {
	// Expected strings are Python's json.dumps(x, ensure_ascii=False) / repr(float).
	tenth := 0.1
	floats := map[float64]string{tenth + 0.2: "0.30000000000000004", 1.5: "1.5", 2: "2.0", 1e-5: "1e-05", 1e20: "1e+20", 1e16: "1e+16", 1e15: "1000000000000000.0",
		0.0001: "0.0001", 123.456: "123.456", -0.5: "-0.5", 1.7976931348623157e308: "1.7976931348623157e+308", 5e-324: "5e-324"}
	for f, want := range floats {
		if got := pyFloat(f); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", f, got, want)
		}
	}
	tmpl := `{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(sort_keys=true) }}`
	x, err := decodeJSON([]byte(`{"b": [1, 2.50, {}], "a": "é\"\n\u0001", "c": null, "d": []}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Render(tmpl, nil, Options{Extra: map[string]any{"x": x}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"b": [1, 2.5, {}], "a": "é\"\n\u0001", "c": null, "d": []}|{
  "b": [
    1,
    2.5,
    {}
  ],
  "a": "é\"\n\u0001",
  "c": null,
  "d": []
}|{"a": "é\"\n\u0001", "b": [1, 2.5, {}], "c": null, "d": []}`
	if got != want {
		t.Errorf("tojson:\n got %s\nwant %s", got, want)
	}
}

func TestTemplateFeatures(t *testing.T) {
	yes := true
	cases := []struct {
		name, tmpl string
		opt        Options
		msgs       []Message
		want       string
	}{
		{"replace without count", `{{ "a-b-c".replace("-", "+") }}`, Options{}, nil, "a+b+c"},
		{"replace with count", `{{ "a-b-c".replace("-", "+", 1) }}`, Options{}, nil, "a+b-c"},
		{"items in order", `{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}`, Options{Extra: map[string]any{}}, nil, "z=1;a=2;"},
		{"enable_thinking undefined", `{{ enable_thinking is defined }}`, Options{}, nil, "False"},
		{"enable_thinking set", `{{ enable_thinking }}`, Options{EnableThinking: &yes}, nil, "True"},
		{"trim and lstrip blocks", "  {% if true %}\nx\n  {% endif %}\ny", Options{}, nil, "x\ny"},
		{"extra variable", `{{ bos_token }}{{ messages[0].content }}`, Options{Extra: map[string]any{"bos_token": "<s>"}}, []Message{{Role: "user", Content: "hi"}}, "<s>hi"},
		{"absent optional fields", `{{ messages[0].reasoning_content is defined }}{{ messages[0].tool_calls is defined }}`, Options{}, []Message{{Role: "assistant", Content: "x"}}, "FalseFalse"},
		{"string arguments", `{{ messages[0].tool_calls[0].function.arguments }}`, Options{}, []Message{{Role: "assistant", ToolCalls: []ToolCall{toolCall("f", "not json")}}}, "not json"},
		{"object arguments", `{{ messages[0].tool_calls[0].function.arguments | tojson }}`, Options{}, []Message{{Role: "assistant", ToolCalls: []ToolCall{toolCall("f", `{"b":1,"a":[true]}`)}}}, `{"b": 1, "a": [true]}`},
	}
	for _, c := range cases {
		if c.name == "items in order" {
			d, err := decodeJSON([]byte(`{"z": 1, "a": 2}`))
			if err != nil {
				t.Fatal(err)
			}
			c.opt.Extra["d"] = d
		}
		got, err := Render(c.tmpl, c.msgs, c.opt)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func toolCall(name, args string) ToolCall {
	var c ToolCall
	c.Function.Name, c.Function.Arguments = name, args
	return c
}

func TestErrors(t *testing.T) {
	cases := map[string]struct {
		tmpl string
		opt  Options
	}{
		"raise_exception": {`{{ raise_exception("Conversation roles must alternate") }}`, Options{}},
		"parse error":     {`{% if %}`, Options{}},
		"unclosed block":  {`{% for m in messages %}`, Options{}},
		"bad tool json":   {`{{ tools }}`, Options{Tools: []json.RawMessage{json.RawMessage(`{"a":`)}}},
	}
	for name, c := range cases {
		if _, err := Render(c.tmpl, nil, c.opt); err == nil {
			t.Errorf("%s: no error", name)
		} else if name == "raise_exception" && !strings.Contains(err.Error(), "roles must alternate") {
			t.Errorf("raise_exception: error %q lacks the message", err)
		}
	}
}

func TestStrftime(t *testing.T) {
	tm := time.Date(2024, 7, 5, 15, 4, 9, 0, time.UTC)
	if got, want := strftime(tm, "%d %b %Y %H:%M:%S %I%p %j %A %%"), "05 Jul 2024 15:04:09 03PM 187 Friday %"; got != want {
		t.Errorf("strftime = %q, want %q", got, want)
	}
}

func FuzzRender(f *testing.F) {
	f.Add(`{% for m in messages %}{{ m.role }}: {{ m.content }}{% endfor %}`, "hi", `{"a": 1}`)
	f.Add(`{{ tools | tojson }}{{ x.y[0] }}`, "", `[1, "x"]`)
	f.Add(`{% if messages[0].content.startswith('<') %}{{ messages[::-1] | length }}{% endif %}`, "<x>", `{}`)
	f.Add(`{% for k, v in tools[0]|items %}{{ k }} {{ v|string }} {% endfor %}{{ tools[0]|dictsort|string }}{{ tools[0].get('b') }}`, "", `{"b": {"c": null}, "a": [1, 2.5, "x"], "b": true}`)
	f.Add("{{ messages[0].content }} {% if true %}\n  {#- c #} {%+ endif %}\t{% raw %} {% endraw %}", "x", `[]`)
	f.Fuzz(func(t *testing.T, tmpl, content, tool string) {
		_, _ = Render(tmpl, []Message{{Role: "user", Content: content}}, Options{Tools: []json.RawMessage{json.RawMessage(tool)}})
	})
}

// TestConcurrentRender renders from several goroutines at once, as a server does.
func TestConcurrentRender(t *testing.T) {
	tmpl := qwen3Template(t)
	cases := readJSON[[]conversation](t, "../../testdata/tokenizer/conversations.json")
	want := readJSON[[]struct{ Name, Text string }](t, "../../testdata/tokenizer/chat_expected.json")
	errs := make(chan error, 4*len(cases))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, c := range cases {
				got, err := Render(tmpl, c.messages(), Options{AddGenerationPrompt: c.AddGenerationPrompt, EnableThinking: c.EnableThinking, Tools: c.Tools})
				if err == nil && got != want[i].Text {
					err = fmt.Errorf("%s: concurrent rendering differs", c.Name)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestTemplateFeatures checks small templates covering the Jinja features chat templates use
// against transformers' renderer (testdata/tokenizer/template_features*.json).
func TestTemplateFeatureParity(t *testing.T) {
	type feature struct{ Name, Template string }
	cases := readJSON[[]feature](t, "../../testdata/tokenizer/template_features.json")
	want := readJSON[[]struct{ Name, Text string }](t, "../../testdata/tokenizer/template_features_expected.json")
	if len(want) != len(cases) {
		t.Fatalf("template_features_expected.json has %d cases, template_features.json %d: run `make tokenizer-golden`", len(want), len(cases))
	}
	var conv conversation
	for _, c := range readJSON[[]conversation](t, "../../testdata/tokenizer/conversations.json") {
		if c.Name == "tool-arguments-json" {
			conv = c
		}
	}
	same := 0
	for i, c := range cases {
		got, err := Render(c.Template, conv.messages(), Options{AddGenerationPrompt: true, Tools: conv.Tools})
		w := want[i].Text
		switch {
		case strings.HasPrefix(w, "ERROR: "):
			if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(w, "ERROR: ")) {
				t.Errorf("%s: got %q, %v; want the error %q", c.Name, got, err, w)
				continue
			}
		case err != nil:
			t.Errorf("%s: %v", c.Name, err)
			continue
		case got != w:
			t.Errorf("%s:\n got %q\nwant %q", c.Name, got, w)
			continue
		}
		same++
	}
	t.Logf("%d/%d feature templates identical to transformers", same, len(cases))
}

// TestContentParts: a message with Parts reaches the template as a list of
// part objects (expected: Python's json.dumps of the list transformers
// passes), and Images lists the image files in prompt order.
func TestContentParts(t *testing.T) {
	msgs := []Message{
		{Role: "user", Content: "ignored", Parts: []Part{{Type: "image", Image: []byte("A")}, {Type: "text", Text: "what is it?"}}},
		{Role: "assistant", Content: "a cat"},
		{Role: "user", Parts: []Part{{Type: "text", Text: "and this?"}, {Type: "image", Image: []byte("B")}}},
	}
	tmpl := `{% for m in messages %}{{ m.content | tojson }}|{% if m.content is string %}{{ m.content }}{% else %}` +
		`{% for c in m.content %}{% if c.type == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% else %}{{ c.text }}{% endif %}{% endfor %}{% endif %}
{% endfor %}`
	got, err := Render(tmpl, msgs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Python jinja2 (trim_blocks, lstrip_blocks, tojson = json.dumps) renders the same data so.
	want := `[{"type": "image"}, {"type": "text", "text": "what is it?"}]|<|vision_start|><|image_pad|><|vision_end|>what is it?` +
		`"a cat"|a cat[{"type": "text", "text": "and this?"}, {"type": "image"}]|and this?<|vision_start|><|image_pad|><|vision_end|>`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if imgs := Images(msgs); len(imgs) != 2 || string(imgs[0]) != "A" || string(imgs[1]) != "B" {
		t.Errorf("Images = %q", imgs)
	}
}

// TestVisionMacro renders the constructs of Qwen3-VL's content macro (a
// namespace image counter, `'image' in item` on a part, a macro whose
// output is trimmed, add_vision_id) over image parts; want is what
// transformers' own Jinja environment renders (_compile_jinja_template).
func TestVisionMacro(t *testing.T) {
	tmpl := `{%- set image_count = namespace(value=0) %}{%- macro render_content(content, do_vision_count) %}` +
		`{%- if content is string %}{{- content }}{%- else %}{%- for item in content %}` +
		`{%- if 'image' in item or 'image_url' in item or item.type == 'image' %}{%- if do_vision_count %}` +
		`{%- set image_count.value = image_count.value + 1 %}{%- endif %}{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}` +
		`<|vision_start|><|image_pad|><|vision_end|>{%- elif 'text' in item %}{{- item.text }}{%- endif %}{%- endfor %}{%- endif %}{%- endmacro %}` +
		`{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' }}{%- set content = render_content(message.content, true)|trim %}` +
		`{{- content }}{{- '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}`
	msgs := []Message{
		{Role: "user", Parts: []Part{{Type: "image"}, {Type: "text", Text: "Describe."}}},
		{Role: "assistant", Content: "A cat."},
		{Role: "user", Parts: []Part{{Type: "text", Text: "And "}, {Type: "image"}, {Type: "text", Text: "?"}}},
	}
	got, err := Render(tmpl, msgs, Options{AddGenerationPrompt: true, Extra: map[string]any{"add_vision_id": true}})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>user\nPicture 1: <|vision_start|><|image_pad|><|vision_end|>Describe.<|im_end|>\n<|im_start|>assistant\nA cat.<|im_end|>\n" +
		"<|im_start|>user\nAnd Picture 2: <|vision_start|><|image_pad|><|vision_end|>?<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestPyQuote: expected strings are Python 3.11's repr() of the same strings.
func TestPyQuote(t *testing.T) {
	for in, want := range map[string]string{
		"it's":               `"it's"`,
		`q"`:                 `'q"'`,
		`a'b"c`:              `'a\'b"c'`,
		"\t\n\r\\":           `'\t\n\r\\'`,
		"\x00\x1f\x7f":       `'\x00\x1f\x7f'`,
		"\u00a0\u00ad":       `'\xa0\xad'`,
		"\u2028\u200b\ufeff": `'\u2028\u200b\ufeff'`,
		"é中🚀":                `'é中🚀'`,
		"\U000e0001\ue000":   `'\U000e0001\ue000'`,
		"":                   `''`,
	} {
		var b strings.Builder
		pyQuote(&b, in)
		if b.String() != want {
			t.Errorf("pyQuote(%q) = %s, want %s", in, b.String(), want)
		}
	}
}

// TestBadJSON: malformed tool JSON is an error naming the tool, never a panic; nesting is bounded.
func TestBadJSON(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth+2) + strings.Repeat("]", maxJSONDepth+2)
	for name, raw := range map[string]string{
		"truncated": `{"a":`, "trailing": `{} {}`, "empty": ``, "bad number": `{"a": 01}`,
		"too deep": deep, "not a value": `}`,
	} {
		_, err := Render(`{{ tools }}`, nil, Options{Tools: []json.RawMessage{json.RawMessage(`{}`), json.RawMessage(raw)}})
		if err == nil || !strings.Contains(err.Error(), "tool 1") {
			t.Errorf("%s: err = %v, want an error about tool 1", name, err)
		}
	}
	ok := strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)
	if _, err := Render(`{{ tools | tojson }}`, nil, Options{Tools: []json.RawMessage{json.RawMessage(ok)}}); err != nil {
		t.Errorf("nesting %d: %v", maxJSONDepth, err)
	}
}

// TestOrderedMappings: the order of a JSON object survives every way a template reaches its
// members, and duplicate keys keep the first one's place with the last one's value, as
// json.loads does (want is what transformers' Jinja environment, _compile_jinja_template,
// renders from json.loads of the same text).
func TestOrderedMappings(t *testing.T) {
	d, err := decodeJSON([]byte(`{"b": 1, "B": 2, "a": {"z": null, "y": [true]}, "b": 3, "é": {}}`))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := `{% for k in d %}{{ k }} {% endfor %}|{% for k, v in d|items %}{{ k }}={{ v|string }} {% endfor %}|` +
		`{% for k, v in d.items() %}{{ k }} {% endfor %}|{{ d.keys()|join(',') }}|{{ d.a|tojson }}|{{ d|tojson(indent=1) }}|` +
		`{{ d.a.z is none }}{{ d.a.z is defined }}{{ d.a.q is defined }}|{{ d['é'] is mapping }}{{ 'y' if d['é'] else 'n' }}|` +
		`{% for k, v in d|dictsort %}{{ k }}{% endfor %}|{% for k, v in d|dictsort(true) %}{{ k }}{% endfor %}|{% for k, v in d.a|dictsort(by='key', reverse=true) %}{{ k }}{% endfor %}`
	got, err := Render(tmpl, nil, Options{Extra: map[string]any{"d": d}})
	if err != nil {
		t.Fatal(err)
	}
	want := "b B a é |b=3 B=2 a={'z': None, 'y': [True]} é={} |b B a é |b,B,a,é|{\"z\": null, \"y\": [true]}|{\n \"b\": 3,\n \"B\": 2,\n" +
		" \"a\": {\n  \"z\": null,\n  \"y\": [\n   true\n  ]\n },\n \"é\": {}\n}|TrueTrueFalse|Truen|abBé|Babé|zy"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestTemplateVars: chat_template_kwargs decoded by TemplateVars reach the template as
// Python's json.loads gives them to jinja2 — 1 an int, null a defined None, an object in its
// keys' order — where encoding/json's map[string]any gave 1.0, an undefined z and sorted keys.
// Anything but one JSON object is an error.
func TestTemplateVars(t *testing.T) {
	const tmpl = `n={{n}} z_defined={{z is defined}} z={{z|string}} d={{d|tojson}} items={% for k,v in d|items %}{{k}},{% endfor %}`
	// Python 3, jinja2 3.1.6:
	//   jinja2.Environment().from_string(tmpl).render(**json.loads('{"n":1,"z":null,"d":{"b":1,"a":2}}'))
	const want = `n=1 z_defined=True z=None d={"b": 1, "a": 2} items=b,a,`
	vars, err := TemplateVars([]byte(`{"n":1,"z":null,"d":{"b":1,"a":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Render(tmpl, nil, Options{Extra: vars})
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if vars, err := TemplateVars([]byte(` {} `)); err != nil || len(vars) != 0 {
		t.Errorf("{}: %v, %v", vars, err)
	}
	deep := `{"x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`
	for _, bad := range []string{`null`, `[]`, `1`, `"x"`, `{"a":1} {}`, `{"a":`, deep} {
		if _, err := TemplateVars([]byte(bad)); err == nil {
			t.Errorf("TemplateVars accepted %.40s", bad)
		}
	}
}
