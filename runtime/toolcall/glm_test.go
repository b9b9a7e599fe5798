package toolcall

import (
	"encoding/json"
	"testing"
)

var weatherTool = json.RawMessage(`{"type": "function", "function": {"name": "get_weather",
	"parameters": {"type": "object", "properties": {
		"city": {"type": "string"}, "days": {"type": "integer"}, "zip": {"type": "string"},
		"temp": {"type": ["number", "null"]}, "metric": {"type": "boolean"},
		"tags": {"type": "array", "items": {"type": "string"}}, "opts": {"anyOf": [{"type": "object"}, {"type": "null"}]}}}}}`)

func TestGLM47(t *testing.T) {
	all := Options{ToolCalls: true, Reasoning: true}
	thinking := Options{ToolCalls: true, Reasoning: true, InReasoning: true}
	typed := Options{ToolCalls: true, Reasoning: true, Tools: []json.RawMessage{weatherTool}}
	for _, tc := range []struct {
		name string
		opt  Options
		in   string
		want Delta
	}{
		{"plain", all, "Hello, world.", Delta{Content: "Hello, world."}},
		{"prompt opened think", thinking, "The user wants weather.</think>I'll check.<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
			Delta{Reasoning: "The user wants weather.", Content: "I'll check.", Calls: []Call{{0, "get_weather", `{"city":"Paris"}`}}}},
		{"empty reasoning", thinking, "</think>Hi", Delta{Content: "Hi"}},
		{"think tags in output", all, "<think>hmm</think>ok", Delta{Reasoning: "hmm", Content: "ok"}},
		{"json values decoded", all, "<tool_call>f<arg_key>n</arg_key><arg_value>42</arg_value><arg_key>x</arg_key><arg_value>-1.5e3</arg_value>" +
			"<arg_key>b</arg_key><arg_value>true</arg_value><arg_key>l</arg_key><arg_value>[1, \"a\"]</arg_value>" +
			"<arg_key>o</arg_key><arg_value>{\"k\": {\"z\": null}}</arg_value><arg_key>nul</arg_key><arg_value>null</arg_value></tool_call>",
			Delta{Calls: []Call{{0, "f", `{"n":42,"x":-1.5e3,"b":true,"l":[1,"a"],"o":{"k":{"z":null}},"nul":null}`}}}},
		{"strings stay strings", all, "<tool_call>f<arg_key>s</arg_key><arg_value>New York</arg_value><arg_key>q</arg_key><arg_value>\"quoted\"</arg_value>" +
			"<arg_key>code</arg_key><arg_value>  if a < b && c > d {\n}\n</arg_value><arg_key>e</arg_key><arg_value></arg_value><arg_key>u</arg_key><arg_value>北京</arg_value></tool_call>",
			Delta{Calls: []Call{{0, "f", `{"s":"New York","q":"\"quoted\"","code":"  if a < b && c > d {\n}\n","e":"","u":"北京"}`}}}},
		{"schema types win", typed, "<tool_call>get_weather<arg_key>zip</arg_key><arg_value>02139</arg_value><arg_key>city</arg_key><arg_value>123</arg_value>" +
			"<arg_key>days</arg_key><arg_value>3</arg_value><arg_key>temp</arg_key><arg_value>21.5</arg_value><arg_key>metric</arg_key><arg_value>False</arg_value>" +
			"<arg_key>tags</arg_key><arg_value>[\"a\"]</arg_value><arg_key>opts</arg_key><arg_value>{\"a\":1}</arg_value></tool_call>",
			Delta{Calls: []Call{{0, "get_weather", `{"zip":"02139","city":"123","days":3,"temp":21.5,"metric":false,"tags":["a"],"opts":{"a":1}}`}}}},
		{"schema type not matched stays string", typed, "<tool_call>get_weather<arg_key>days</arg_key><arg_value>three</arg_value></tool_call>",
			Delta{Calls: []Call{{0, "get_weather", `{"days":"three"}`}}}},
		{"glm-4.5 newlines", all, "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
			Delta{Calls: []Call{{0, "get_weather", `{"city":"Paris"}`}}}},
		{"no arguments", all, "<tool_call>now</tool_call>", Delta{Calls: []Call{{0, "now", `{}`}}}},
		{"two calls and text around", thinking, "plan</think>First.\n<tool_call>a<arg_key>k</arg_key><arg_value>1</arg_value></tool_call>\n" +
			"<tool_call>b<arg_key>k</arg_key><arg_value>v</arg_value><arg_key>k</arg_key><arg_value>w</arg_value></tool_call>\nDone.",
			Delta{Reasoning: "plan", Content: "First.Done.", Calls: []Call{{0, "a", `{"k":1}`}, {1, "b", `{"k":"w"}`}}}},
		{"hermes json inside", all, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>",
			Delta{Calls: []Call{{0, "f", `{"a":1}`}}}},
		{"unterminated call", all, "<tool_call>f<arg_key>a</arg_key><arg_value>1</arg_value>",
			Delta{Calls: []Call{{0, "f", `{"a":1}`}}}},
		{"malformed: value without key", all, "<tool_call>f<arg_value>1</arg_value></tool_call>",
			Delta{Content: "<tool_call>f<arg_value>1</arg_value></tool_call>"}},
		{"malformed: key without value", all, "x <tool_call>f<arg_key>a</arg_key></tool_call> y",
			Delta{Content: "x <tool_call>f<arg_key>a</arg_key></tool_call> y"}},
		{"malformed: unclosed value", all, "<tool_call>f<arg_key>a</arg_key><arg_value>1",
			Delta{Content: "<tool_call>f<arg_key>a</arg_key><arg_value>1"}},
		{"malformed: stray text", all, "<tool_call>f<arg_key>a</arg_key><arg_value>1</arg_value>oops</tool_call>",
			Delta{Content: "<tool_call>f<arg_key>a</arg_key><arg_value>1</arg_value>oops</tool_call>"}},
		{"malformed: no name", all, "<tool_call><arg_key>a</arg_key><arg_value>1</arg_value></tool_call>",
			Delta{Content: "<tool_call><arg_key>a</arg_key><arg_value>1</arg_value></tool_call>"}},
		{"malformed: name with spaces", all, "<tool_call>call me</tool_call>", Delta{Content: "<tool_call>call me</tool_call>"}},
		{"tools off", Options{Reasoning: true}, "<tool_call>f</tool_call>", Delta{Content: "<tool_call>f</tool_call>"}},
		{"lookalikes", all, "a <tool b <arg_key> </think", Delta{Content: "a <tool b <arg_key> </think"}},
	} {
		checkStream(t, tc.name, "glm47", tc.opt, tc.in, tc.want)
	}
}

func FuzzGLM47(f *testing.F) {
	f.Add("a</think>b<tool_call>f<arg_key>k</arg_key><arg_value>[1]</arg_value></tool_call>c", 3, true)
	f.Add("<tool_call>f\n<arg_key>k</arg_key>\n<arg_value>x</arg_value>\n", 1, false)
	f.Fuzz(func(t *testing.T, s string, size int, inReasoning bool) {
		fuzzParser(t, "glm47", Options{ToolCalls: true, Reasoning: true, InReasoning: inReasoning, Tools: []json.RawMessage{weatherTool}}, s, size)
	})
}
