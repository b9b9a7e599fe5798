package toolcall

import (
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestQwen3(t *testing.T) {
	all := Options{ToolCalls: true, Reasoning: true}
	for _, tc := range []struct {
		name string
		opt  Options
		in   string
		want Delta
	}{
		{"plain", all, "Hello world.", Delta{Content: "Hello world."}},
		{"think", all, "<think>\nLet me see.\n</think>\n\nThe answer is 4.",
			Delta{Reasoning: "Let me see.", Content: "The answer is 4."}},
		{"prompt opened think", Options{ToolCalls: true, Reasoning: true, InReasoning: true}, "hmm\n</think>\n\nok",
			Delta{Reasoning: "hmm", Content: "ok"}},
		{"tool call", all, "I'll check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>",
			Delta{Content: "I'll check.", Calls: []Call{{0, "get_weather", `{"city":"Paris","unit":"c"}`}}}},
		{"two calls", all, "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call>",
			Delta{Calls: []Call{{0, "a", `{}`}, {1, "b", `{"x":1}`}}}},
		{"bad json stays content", all, "<tool_call>{oops}</tool_call>",
			Delta{Content: "<tool_call>{oops}</tool_call>"}},
		{"arguments not an object", all, "<tool_call>{\"name\": \"x\", \"arguments\": 0}</tool_call>",
			Delta{Content: "<tool_call>{\"name\": \"x\", \"arguments\": 0}</tool_call>"}},
		{"unterminated call", all, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": [1, 2]}}",
			Delta{Calls: []Call{{0, "f", `{"a":[1,2]}`}}}},
		{"unterminated garbage", all, "<tool_call>\n{\"name\": \"f\"",
			Delta{Content: "<tool_call>\n{\"name\": \"f\""}},
		{"tools off", Options{Reasoning: true}, "<tool_call>{\"name\": \"f\"}</tool_call>",
			Delta{Content: "<tool_call>{\"name\": \"f\"}</tool_call>"}},
		{"reasoning off", Options{ToolCalls: true}, "<think>x</think>y",
			Delta{Content: "<think>x</think>y"}},
		{"lookalike", all, "a <thinking> b < c", Delta{Content: "a <thinking> b < c"}},
	} {
		// Whole, then in every split into pieces of 1..4 bytes: the same result.
		p, _ := New("qwen3", tc.opt)
		if got := ParseAll(p, tc.in); !cmp.Equal(got, tc.want) {
			t.Errorf("%s whole: (-got +want)\n%s", tc.name, cmp.Diff(got, tc.want))
		}
		for size := 1; size <= 4; size++ {
			p, _ := New("qwen3", tc.opt)
			var got Delta
			for i := 0; i < len(tc.in); i += size {
				d := p.Add(tc.in[i:min(i+size, len(tc.in))])
				got.Content += d.Content
				got.Reasoning += d.Reasoning
				got.Calls = append(got.Calls, d.Calls...)
			}
			f := p.Flush()
			got.Content += f.Content
			got.Reasoning += f.Reasoning
			got.Calls = append(got.Calls, f.Calls...)
			if !cmp.Equal(got, tc.want) {
				t.Errorf("%s in pieces of %d: (-got +want)\n%s", tc.name, size, cmp.Diff(got, tc.want))
			}
		}
	}
	if _, err := New("nope", Options{}); err == nil {
		t.Error("unknown format: want an error")
	}
}

func FuzzQwen3(f *testing.F) {
	f.Add("<think>a</think>b<tool_call>{\"name\":\"x\",\"arguments\":{}}</tool_call>", 3)
	f.Fuzz(func(t *testing.T, s string, size int) {
		if size <= 0 || size > 64 {
			size = 1
		}
		p, _ := New("qwen3", Options{ToolCalls: true, Reasoning: true})
		for i := 0; i < len(s); i += size {
			p.Add(s[i:min(i+size, len(s))])
		}
		d := p.Flush()
		for _, c := range d.Calls {
			if !utf8.ValidString(c.Arguments) && utf8.ValidString(s) {
				t.Errorf("invalid arguments %q", c.Arguments)
			}
		}
		// Pieces give what the whole text gives; arguments are JSON objects.
		fuzzParser(t, "qwen3", Options{ToolCalls: true, Reasoning: true}, s, size)
	})
}
