package toolcall

import (
	"encoding/json"
	"testing"
)

func TestQwen3Coder(t *testing.T) {
	all := Options{ToolCalls: true, Reasoning: true}
	typed := Options{ToolCalls: true, Reasoning: true, Tools: []json.RawMessage{weatherTool}}
	call := func(name string, params ...string) string {
		s := "<tool_call>\n<function=" + name + ">\n"
		for i := 0; i < len(params); i += 2 {
			s += "<parameter=" + params[i] + ">\n" + params[i+1] + "\n</parameter>\n"
		}
		return s + "</function>\n</tool_call>"
	}
	for _, tc := range []struct {
		name string
		opt  Options
		in   string
		want Delta
	}{
		{"plain", all, "def f():\n    return 1 < 2\n", Delta{Content: "def f():\n    return 1 < 2"}},
		{"one call", all, "Let me look.\n" + call("get_weather", "city", "Paris", "days", "3"),
			Delta{Content: "Let me look.", Calls: []Call{{0, "get_weather", `{"city":"Paris","days":"3"}`}}}},
		{"schema types", typed, call("get_weather", "city", "123", "days", "3", "temp", "-2.5", "metric", "True",
			"tags", `["a", "b"]`, "opts", `{"x": [1]}`, "zip", "02139", "extra", "7"),
			Delta{Calls: []Call{{0, "get_weather", `{"city":"123","days":3,"temp":-2.5,"metric":true,"tags":["a","b"],"opts":{"x":[1]},"zip":"02139","extra":"7"}`}}}},
		{"schema type not matched stays string", typed, call("get_weather", "days", "a few", "temp", "null", "tags", "a, b"),
			Delta{Calls: []Call{{0, "get_weather", `{"days":"a few","temp":null,"tags":"a, b"}`}}}},
		{"not JSON numbers stay strings", typed, call("get_weather", "days", "007", "temp", "+1", "metric", "yes"),
			Delta{Calls: []Call{{0, "get_weather", `{"days":"007","temp":"+1","metric":"yes"}`}}}},
		{"unknown tool keeps strings", typed, call("other", "n", "1", "b", "true"),
			Delta{Calls: []Call{{0, "other", `{"n":"1","b":"true"}`}}}},
		{"multi-line value keeps inner newlines", all, call("write_file", "path", "a.py", "content", "\nimport os\n\nprint(os.sep)\n"),
			Delta{Calls: []Call{{0, "write_file", `{"path":"a.py","content":"\nimport os\n\nprint(os.sep)\n"}`}}}},
		{"markup in a value", all, call("write_file", "content", "<div>a & b</div>"),
			Delta{Calls: []Call{{0, "write_file", `{"content":"<div>a & b</div>"}`}}}},
		{"no parameters", all, "<tool_call>\n<function=now>\n</function>\n</tool_call>", Delta{Calls: []Call{{0, "now", `{}`}}}},
		{"two calls, text after", all, call("a", "k", "1") + "\n" + call("b", "k", "2") + "\nDone.",
			Delta{Content: "Done.", Calls: []Call{{0, "a", `{"k":"1"}`}, {1, "b", `{"k":"2"}`}}}},
		{"two functions in one block", all, "<tool_call>\n<function=a>\n</function>\n<function=b>\n<parameter=x>\ny\n</parameter>\n</function>\n</tool_call>",
			Delta{Calls: []Call{{0, "a", `{}`}, {1, "b", `{"x":"y"}`}}}},
		{"missing </parameter>", all, "<tool_call>\n<function=f>\n<parameter=a>\n1\n<parameter=b>\n2\n</function>\n</tool_call>",
			Delta{Calls: []Call{{0, "f", `{"a":"1","b":"2"}`}}}},
		{"missing </function>", all, "<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</tool_call>",
			Delta{Calls: []Call{{0, "f", `{"a":"1"}`}}}},
		{"unterminated call", all, "<tool_call>\n<function=f>\n<parameter=a>\nx\n</parameter>\n</function>",
			Delta{Calls: []Call{{0, "f", `{"a":"x"}`}}}},
		{"hermes json inside", all, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>",
			Delta{Calls: []Call{{0, "f", `{"a":1}`}}}},
		{"think", Options{ToolCalls: true, Reasoning: true, InReasoning: true}, "why\n</think>\n\n" + call("f", "a", "b"),
			Delta{Reasoning: "why", Calls: []Call{{0, "f", `{"a":"b"}`}}}},
		{"malformed: no function", all, "<tool_call>\nhello\n</tool_call>", Delta{Content: "<tool_call>\nhello\n</tool_call>"}},
		{"malformed: unclosed function tag", all, "<tool_call><function=f</tool_call>", Delta{Content: "<tool_call><function=f</tool_call>"}},
		{"malformed: empty name", all, "<tool_call><function=></function></tool_call>", Delta{Content: "<tool_call><function=></function></tool_call>"}},
		{"malformed: stray text", all, "<tool_call><function=f>oops</function></tool_call>", Delta{Content: "<tool_call><function=f>oops</function></tool_call>"}},
		{"malformed: bad parameter tag", all, "<tool_call><function=f><parameter=a b>1</parameter></function></tool_call>",
			Delta{Content: "<tool_call><function=f><parameter=a b>1</parameter></function></tool_call>"}},
		{"bare function (no <tool_call>)", all, "Sure.\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\nDone.",
			Delta{Content: "Sure.Done.", Calls: []Call{{0, "f", `{"a":"1"}`}}}},
		{"bare then wrapped", all, "<function=a>\n</function>\n" + call("b", "k", "v"),
			Delta{Calls: []Call{{0, "a", `{}`}, {1, "b", `{"k":"v"}`}}}},
		{"bare unterminated", all, "<function=f>\n<parameter=a>\nx\n</parameter>\n", Delta{Calls: []Call{{0, "f", `{"a":"x"}`}}}},
		{"bare lookalike keeps its spaces", all, "write <function=NAME> then </function> here",
			Delta{Content: "write <function=NAME> then </function> here"}},
		{"bare lookalike unterminated", all, "a\n <function=x> b", Delta{Content: "a\n <function=x> b"}},
		{"malformed call keeps the space before it", all, "x <tool_call>oops</tool_call> y", Delta{Content: "x <tool_call>oops</tool_call> y"}},
		{"tools off", Options{Reasoning: true}, call("f"), Delta{Content: call("f")}},
		{"lookalikes", all, "<function=f> <tool <parameter=", Delta{Content: "<function=f> <tool <parameter="}},
	} {
		checkStream(t, tc.name, "qwen3-coder", tc.opt, tc.in, tc.want)
	}
}

func FuzzQwen3Coder(f *testing.F) {
	f.Add("x\n<tool_call>\n<function=get_weather>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>\ny", 3, false)
	f.Add("<tool_call><function=f><parameter=a>1<parameter=b>[2]", 1, true)
	f.Fuzz(func(t *testing.T, s string, size int, inReasoning bool) {
		fuzzParser(t, "qwen3-coder", Options{ToolCalls: true, Reasoning: true, InReasoning: inReasoning, Tools: []json.RawMessage{weatherTool}}, s, size)
	})
}

func TestFormatFor(t *testing.T) {
	for _, tc := range []struct{ arch, name, want string }{
		{"Qwen3MoeForCausalLM", "qwen3-coder-30b-a3b", "qwen3-coder"},
		{"Qwen3NextForCausalLM", "qwen3-coder-next", "qwen3-coder"},
		{"Glm4MoeLiteForCausalLM", "glm-4.7-flash", "glm47"},
		{"Qwen3ForCausalLM", "qwen3-0.6b", "qwen3"},
		{"Qwen3VLForConditionalGeneration", "qwen3-vl-2b", "qwen3"},
		{"", "GLM-4.7-Flash", "glm47"},
		{"", "Qwen3-Coder-Next", "qwen3-coder"},
		{"LlamaForCausalLM", "llama", "qwen3"},
	} {
		if got := FormatFor(tc.arch, tc.name); got != tc.want {
			t.Errorf("FormatFor(%q, %q) = %q, want %q", tc.arch, tc.name, got, tc.want)
		}
		if _, err := New(FormatFor(tc.arch, tc.name), Options{}); err != nil {
			t.Errorf("New(FormatFor(%q)): %v", tc.arch, err)
		}
	}
}
