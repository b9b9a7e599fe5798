package pio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/inference-pio/pio/internal/schemacheck"
	"github.com/inference-pio/pio/runtime/toolcall"
)

// forcedTool has parameters each tool-call format can enforce: raw
// strings (free and enum) and JSON values of one type.
const forcedTool = `{"type": "object", "properties": {
	"path": {"type": "string", "minLength": 1, "maxLength": 12},
	"mode": {"type": "string", "enum": ["create", "append"]},
	"lines": {"type": "integer", "minimum": 0, "maximum": 100},
	"force": {"type": "boolean"},
	"tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "maxItems": 2}
}, "required": ["path", "lines"], "additionalProperties": false}`

type forcedSet struct {
	defs []json.RawMessage
	sc   map[string]*schemacheck.Schema
}

func forcedTools(t *testing.T, hermes, small bool) forcedSet {
	var s forcedSet
	s.sc = map[string]*schemacheck.Schema{}
	add := func(name string, params []byte) {
		def, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]any{"name": name, "parameters": json.RawMessage(params)}})
		s.defs = append(s.defs, def)
		s.sc[name] = schemacheck.Compile(t, name, params)
	}
	if small {
		add("f", []byte(`{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":9}},"required":["n"],"additionalProperties":false}`))
		add("g", []byte(`{"type":"object","properties":{"b":{"type":"boolean"}},"additionalProperties":false}`))
		return s
	}
	// get_weather of grammar/testdata, its location bounded (a free raw
	// string in the XML formats rarely ends under a random model).
	add("get_weather", []byte(`{"type": "object", "properties": {"location": {"type": "string", "maxLength": 20}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"], "additionalProperties": false}`))
	add("write_file", []byte(forcedTool))
	if hermes {
		for _, n := range []string{"run_shell", "search_files"} {
			add(n, schemacheck.Load(t, "..", n).Src)
		}
	}
	return s
}

// checkForced parses text with format's parser: tool calls only, each of
// an offered tool (want when set) with arguments valid under its schema.
func (s forcedSet) check(format, reasoning, text, want string) (int, error) {
	p, err := toolcall.New(format, toolcall.Options{ToolCalls: true, Reasoning: true, Tools: s.defs})
	if err != nil {
		return 0, err
	}
	d := toolcall.ParseAll(p, text)
	if d.Content != "" || len(d.Calls) == 0 {
		return 0, fmt.Errorf("content %q and %d calls", d.Content, len(d.Calls))
	}
	for _, c := range d.Calls {
		sc, ok := s.sc[c.Name]
		if !ok || want != "" && c.Name != want {
			return 0, fmt.Errorf("a call of %q", c.Name)
		}
		if err := sc.Validate(c.Arguments); err != nil {
			return 0, fmt.Errorf("%s(%s): %v", c.Name, c.Arguments, err)
		}
	}
	return len(d.Calls), nil
}

// TestToolChoiceFormats: sampling at temperature 1 from the tiny model
// under each tool-call format's grammar (the format chosen here, not by
// the tiny model's architecture), over the vocabulary with the markup
// tokens and without: every finished output parses, through
// that format's own parser, into calls of the offered tools (the named one
// when named; exactly one when one is asked) whose arguments the
// independent validator accepts.
func TestToolChoiceFormats(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 64, MaxSeqs: 8, CacheTokens: 16384})
	prompt, err := e.Encode("Call a tool:")
	if err != nil {
		t.Fatal(err)
	}
	n := 16
	if testing.Short() {
		n = 6
	}
	one := 1.0
	markup, _ := e.text.TokenID("<tool_call>")
	for _, format := range []string{"qwen3", "qwen3-coder", "glm47"} {
		set := forcedTools(t, format == "qwen3", false)
		for _, f := range []toolcall.Force{{}, {One: true}, {Name: "write_file"}} {
			g, err := toolcall.Grammar(format, set.defs, f)
			if err != nil {
				t.Fatalf("%s %+v: %v", format, f, err)
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			finished, used := 0, 0
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					seed := uint64(100 + i)
					// Half over the vocabulary with the markup tokens (as Chat
					// does), half with the markup spelled from ordinary tokens.
					markupVocab := i%2 == 0
					opt := GenerateOptions{MaxTokens: 768, Temperature: &one, Seed: &seed, Grammar: g}
					res, err := e.generate(context.Background(), prompt, opt, nil, nil, markupVocab, nil)
					if err != nil {
						t.Errorf("%s %+v seed %d: %v", format, f, seed, err)
						return
					}
					if res.FinishReason != "stop" {
						if !g.NewMatcher().AcceptString(res.Text) {
							t.Errorf("%s %+v seed %d: truncated %q is no prefix of the grammar", format, f, seed, res.Text)
						}
						return
					}
					if markupVocab && slices.Contains(res.Tokens, markup) {
						mu.Lock()
						used++
						mu.Unlock()
					}
					k, err := set.check(format, "", res.Text, f.Name)
					if err != nil {
						t.Errorf("%s %+v seed %d: %q: %v", format, f, seed, res.Text, err)
						return
					}
					if (f.One || f.Name != "") && k != 1 {
						t.Errorf("%s %+v seed %d: %d calls", format, f, seed, k)
					}
					mu.Lock()
					finished++
					mu.Unlock()
				}()
			}
			wg.Wait()
			t.Logf("%s %+v: %d of %d finished, all valid calls (%d with the <tool_call> token)", format, f, finished, n, used)
			if finished < n/2 {
				t.Errorf("%s %+v: only %d of %d finished", format, f, finished, n)
			}
		}
	}
}

// TestChatToolChoice: Chat with ToolChoice on the tiny model (Qwen3, so
// Hermes JSON), thinking on and off: each finished answer is tool calls
// (finish_reason tool_calls) of the offered tools, arguments valid; a
// schema the grammar cannot enforce is ErrInvalid with a SchemaError.
func TestChatToolChoice(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 64, MaxSeqs: 8, CacheTokens: 16384})
	set := forcedTools(t, true, true) // the tiny model holds 512 tokens, the tools' prompt included
	one := 1.0
	finished := 0
	for i := range 12 {
		seed := uint64(i)
		think := i%4 == 0
		f := toolcall.Force{One: i%3 == 0}
		if i%4 == 1 {
			f = toolcall.Force{Name: "g"}
		}
		res, err := e.Chat(context.Background(), []Message{{Role: "user", Content: "Weather?"}}, ChatOptions{
			GenerateOptions: GenerateOptions{Temperature: &one, Seed: &seed},
			Tools:           set.defs, EnableThinking: &think, ToolChoice: &f,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.FinishReason == "length" {
			t.Logf("seed %d (thinking %v): cut by the length after %d tokens", seed, think, res.CompletionTokens)
			continue
		}
		finished++
		if res.FinishReason != "tool_calls" || res.Content != "" || len(res.ToolCalls) == 0 {
			t.Errorf("seed %d: finish %q, content %q, %d calls", seed, res.FinishReason, res.Content, len(res.ToolCalls))
			continue
		}
		if (f.One || f.Name != "") && len(res.ToolCalls) != 1 {
			t.Errorf("seed %d: %d calls, want 1", seed, len(res.ToolCalls))
		}
		for _, c := range res.ToolCalls {
			sc, ok := set.sc[c.Function.Name]
			if !ok || f.Name != "" && c.Function.Name != f.Name {
				t.Errorf("seed %d: a call of %q", seed, c.Function.Name)
				continue
			}
			if err := sc.Validate(c.Function.Arguments); err != nil {
				t.Errorf("seed %d: %s(%s): %v", seed, c.Function.Name, c.Function.Arguments, err)
			}
		}
	}
	t.Logf("%d of 12 chats finished, each with valid tool calls", finished)
	if finished < 6 {
		t.Errorf("only %d of 12 chats finished", finished)
	}
	bad := json.RawMessage(`{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","contentEncoding":"x"}}}}}`)
	_, err := e.Chat(context.Background(), []Message{{Role: "user", Content: "Hi"}}, ChatOptions{Tools: []json.RawMessage{bad}, ToolChoice: &toolcall.Force{}}, nil)
	var se *toolcall.SchemaError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &se) || !strings.Contains(err.Error(), "contentEncoding") {
		t.Errorf("unsupported keyword: %v", err)
	}
}

// TestMarkupVocab: the vocabulary of the tool-call grammars has the
// tokenizer's <tool_call> and </tool_call> (added, not special) as their
// text, where the grammar vocabulary has them as no text; a Hermes call
// may start with the <tool_call> token, and a text that uses it round-trips.
func TestMarkupVocab(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 64, MaxSeqs: 4, CacheTokens: 4096})
	open, ok1 := e.text.TokenID("<tool_call>")
	closeID, ok2 := e.text.TokenID("</tool_call>")
	if !ok1 || !ok2 {
		t.Skip("the tiny tokenizer has no <tool_call> tokens")
	}
	mv, err := e.markupVocab()
	if err != nil {
		t.Fatal(err)
	}
	gv, _ := e.grammarVocab()
	if mv2, _ := e.markupVocab(); mv2 != mv {
		t.Error("the markup vocabulary is built again")
	}
	if string(mv.toks[open]) != "<tool_call>" || string(mv.toks[closeID]) != "</tool_call>" || gv.toks[open] != nil {
		t.Errorf("markup %q %q, grammar vocabulary %q", mv.toks[open], mv.toks[closeID], gv.toks[open])
	}
	if id, ok := e.text.TokenID("<think>"); ok && mv.toks[id] != nil {
		t.Errorf("<think> is text in the markup vocabulary")
	}
	set := forcedTools(t, true, true)
	g, err := toolcall.Grammar("qwen3", set.defs, toolcall.Force{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.constraintOver(g, true)
	if err != nil {
		t.Fatal(err)
	}
	mask := make([]uint64, (e.vocab+63)/64)
	c.Mask(mask)
	if mask[open/64]>>(uint(open)%64)&1 == 0 {
		t.Fatal("a call cannot start with the <tool_call> token")
	}
	if err := c.Accept(open); err != nil {
		t.Fatal(err)
	}
	rest, err := e.Encode("\n{\"name\": \"f\", \"arguments\": {\"n\": 3}}\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range append(rest, closeID) {
		if err := c.Accept(id); err != nil {
			t.Fatalf("token %d: %v", id, err)
		}
	}
	if !c.m.CanEnd() {
		t.Error("the call is not complete")
	}
}
