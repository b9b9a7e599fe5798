package toolcall

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/grammar"
	"github.com/inference-pio/pio/internal/schemacheck"
)

// xmlTool has the parameter kinds the XML-argument formats write: raw
// strings (free, enum, const) and JSON values of one type each.
const xmlTool = `{"type": "object", "properties": {
	"path": {"type": "string", "description": "where"},
	"content": {"type": "string"},
	"mode": {"type": "string", "enum": ["create", "overwrite", "append"]},
	"kind": {"type": "string", "const": "text"},
	"title": {"type": "string", "minLength": 2, "maxLength": 6},
	"lines": {"type": "integer", "minimum": 0, "maximum": 100},
	"ratio": {"type": "number"},
	"force": {"type": "boolean"},
	"tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "maxItems": 3},
	"opts": {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "y"]}}, "required": ["a"], "additionalProperties": false}
}, "required": ["path", "content", "lines"], "additionalProperties": false}`

// testTool is one tool definition and its parameters' validator.
type testTool struct {
	def json.RawMessage
	sc  *schemacheck.Schema
}

func loadTool(t testing.TB, name string, params []byte) testTool {
	def, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]any{"name": name, "description": "a tool", "parameters": json.RawMessage(params)}})
	return testTool{def: def, sc: schemacheck.Compile(t, name, params)}
}

// toolSets are the tools offered to each format: every format gets
// get_weather and xml_tool; Hermes (JSON arguments) also gets tool
// schemas of grammar/testdata.
func toolSets(t testing.TB) map[string]map[string]testTool {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("..", "..", "grammar", "testdata", "schemas", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	common := func() map[string]testTool {
		return map[string]testTool{
			"get_weather": loadTool(t, "get_weather", read("get_weather")),
			"xml_tool":    loadTool(t, "xml_tool", []byte(xmlTool)),
			"no_params":   loadTool(t, "no_params", []byte(`{"type": "object", "properties": {}}`)),
		}
	}
	hermes := common()
	for _, n := range []string{"edit_file", "run_shell", "search_files", "create_event", "sql_query"} {
		hermes[n] = loadTool(t, n, read(n))
	}
	return map[string]map[string]testTool{"qwen3": hermes, "qwen3-coder": common(), "glm47": common()}
}

func defs(tools map[string]testTool) []json.RawMessage {
	var out []json.RawMessage
	for _, n := range []string{"get_weather", "xml_tool", "no_params", "edit_file", "run_shell", "search_files", "create_event", "sql_query"} {
		if tt, ok := tools[n]; ok {
			out = append(out, tt.def)
		}
	}
	return out
}

// tails are the markup that ends a raw value or a call: walk tries them
// whole now and then, so that walks through raw text end.
var tails = []string{"\n</parameter>\n", "</arg_value>", "</tool_call>", "\n</function>\n</tool_call>"}

// walk is a random sentence of g (grammar.RandomSentence); it prefers the
// bytes and tails that close things, so walks end.
func walk(t testing.TB, g *grammar.Grammar, rng *rand.Rand, maxLen int) (string, bool) {
	t.Helper()
	s, ok, err := g.RandomSentence(rng, grammar.SentenceOptions{MaxLen: maxLen, Closers: "\"]}<\n", Tails: tails})
	if err != nil {
		t.Fatal(err)
	}
	return s, ok
}

// CheckCalls parses text with format's parser and checks that it is tool
// calls only, each naming one of tools (want, when set) with arguments
// valid under its schema; it returns how many.
func checkCalls(format, text string, tools map[string]testTool, want string) (int, error) {
	p, err := New(format, Options{ToolCalls: true, Reasoning: true, Tools: defs(tools)})
	if err != nil {
		return 0, err
	}
	d := ParseAll(p, text)
	if d.Content != "" || len(d.Calls) == 0 {
		return 0, fmt.Errorf("content %q and %d calls", d.Content, len(d.Calls))
	}
	for _, c := range d.Calls {
		tt, ok := tools[c.Name]
		if !ok || want != "" && c.Name != want {
			return 0, fmt.Errorf("a call of %q", c.Name)
		}
		if err := tt.sc.Validate(c.Arguments); err != nil {
			return 0, fmt.Errorf("%s(%s): %v", c.Name, c.Arguments, err)
		}
	}
	return len(d.Calls), nil
}

// TestGrammarRoundTrip: random sentences of each format's tool-call
// grammar ("required", parallel or one, and each named function) parse
// back through the format's own parser into calls of the offered tools
// whose arguments the independent validator accepts.
func TestGrammarRoundTrip(t *testing.T) {
	n := 150
	if testing.Short() {
		n = 30
	}
	for format, tools := range toolSets(t) {
		forces := []Force{{}, {One: true}}
		for name := range tools {
			forces = append(forces, Force{Name: name})
		}
		for _, f := range forces {
			g, err := Grammar(format, defs(tools), f)
			if err != nil {
				t.Fatalf("%s %+v: %v", format, f, err)
			}
			rng := rand.New(rand.NewPCG(1, uint64(len(f.Name))))
			var multi, done int
			for i := 0; i < n; i++ {
				s, ok := walk(t, g, rng, 4000)
				if !ok {
					continue
				}
				done++
				k, err := checkCalls(format, s, tools, f.Name)
				if err != nil {
					t.Fatalf("%s %+v: %q: %v", format, f, s, err)
				}
				if (f.One || f.Name != "") && k != 1 {
					t.Fatalf("%s %+v: %d calls in %q", format, f, k, s)
				}
				if k > 1 {
					multi++
				}
			}
			if done < n/2 {
				t.Errorf("%s %+v: only %d of %d walks finished", format, f, done, n)
			}
			if f == (Force{}) && multi == 0 {
				t.Errorf("%s: no walk made parallel calls", format)
			}
		}
	}
}

// TestGrammarTemplateText: the grammars accept the calls as each model's
// chat template writes them, and no raw "<" inside a JSON string (it is
// written \u003c there).
func TestGrammarTemplateText(t *testing.T) {
	w := `{"type":"function","function":{"name":"get_weather","parameters":` + `{"type": "object", "properties": {"location": {"type": "string"}, "days": {"type": "integer"}}, "required": ["location"]}}}`
	tools := []json.RawMessage{json.RawMessage(w)}
	for format, text := range map[string]string{
		"qwen3":       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", \"days\": 3}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Rome\"}}\n</tool_call>",
		"qwen3-coder": "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis <b>\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
		"glm47":       "<tool_call>get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value><arg_key>days</arg_key><arg_value>3</arg_value></tool_call>",
	} {
		g, err := Grammar(format, tools, Force{})
		if err != nil {
			t.Fatal(err)
		}
		m := g.NewMatcher()
		if !m.AcceptString(text) || !m.CanEnd() {
			t.Errorf("%s: the grammar rejects %q", format, text)
		}
		if format == "qwen3" {
			esc := strings.Replace(text, "Paris", `Paris \u003cb>`, 1)
			if m := g.NewMatcher(); !m.AcceptString(esc) || !m.CanEnd() {
				t.Errorf("%s: the grammar rejects %q", format, esc)
			}
		}
		for _, bad := range []string{"Hello", "<tool_call>\n{\"name\": \"other\"", "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"<"} {
			if g.NewMatcher().AcceptString(bad) {
				t.Errorf("%s: the grammar accepts %q", format, bad)
			}
		}
	}
}

// TestGrammarErrors: a named function not among the tools, an unsupported
// keyword (named, with the tool's index), and what the XML formats cannot
// write.
func TestGrammarErrors(t *testing.T) {
	tool := func(params string) json.RawMessage {
		return json.RawMessage(`{"type":"function","function":{"name":"f","parameters":` + params + `}}`)
	}
	ok := tool(`{"type":"object","properties":{"a":{"type":"string"}}}`)
	if _, err := Grammar("qwen3", []json.RawMessage{ok}, Force{Name: "g"}); err == nil || !strings.Contains(err.Error(), `"g"`) {
		t.Errorf("named function not among the tools: %v", err)
	}
	bad := tool(`{"type":"object","properties":{"a":{"type":"string","contentEncoding":"base64"}}}`)
	for _, format := range []string{"qwen3", "qwen3-coder", "glm47"} {
		_, err := Grammar(format, []json.RawMessage{ok, bad}, Force{})
		var se *SchemaError
		if !errors.As(err, &se) || se.Tool != 1 || !strings.Contains(err.Error(), "contentEncoding") {
			t.Errorf("%s: unsupported keyword: %v", format, err)
		}
	}
	for _, params := range []string{
		`{"type":"object","properties":{"a":{"type":["string","null"]}}}`,
		`{"type":"object","properties":{"a":{"type":"string","pattern":"^x$"}}}`,
		`{"type":"object","properties":{"a":{"anyOf":[{"type":"string"},{"type":"integer"}]}}}`,
	} {
		for _, format := range []string{"qwen3-coder", "glm47"} {
			if _, err := Grammar(format, []json.RawMessage{tool(params)}, Force{}); err == nil {
				t.Errorf("%s: %s accepted", format, params)
			}
		}
		if _, err := Grammar("qwen3", []json.RawMessage{tool(params)}, Force{}); err != nil {
			t.Errorf("qwen3: %s: %v", params, err)
		}
	}
}
