// Package toolcall splits a chat model's generated text into what the
// OpenAI API returns separately: the answer (content), the reasoning
// (reasoning_content) and tool calls. Parsers work on a stream of text
// pieces, holding back only what could be the start of a tag, so streamed
// responses carry the same split as complete ones.
//
// Each model family's markup is one Parser; New picks it by name and
// FormatFor picks the name from a model's architecture. All share
// <think>…</think> and the <tool_call>…</tool_call> wrapper and differ in
// the call inside: Qwen3/Hermes {"name": …, "arguments": {…}} (format
// "qwen3"), GLM-4.7's NAME<arg_key>k</arg_key><arg_value>v</arg_value>…
// ("glm47") and Qwen3-Coder's <function=NAME><parameter=K>V</parameter>…
// </function> ("qwen3-coder").
package toolcall

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Call is one complete tool call. Arguments is a JSON object as text.
type Call struct {
	Index     int // position among the response's calls, from 0
	Name      string
	Arguments string
}

// Delta is what one piece of text adds to each part.
type Delta struct {
	Content   string
	Reasoning string
	Calls     []Call
}

// Empty reports whether d carries nothing.
func (d Delta) Empty() bool { return d.Content == "" && d.Reasoning == "" && len(d.Calls) == 0 }

// Parser splits streamed text. Not safe for concurrent use.
type Parser interface {
	// Add consumes the next piece of generated text.
	Add(text string) Delta
	// Flush returns whatever was held back, at the end of generation.
	Flush() Delta
}

// Options configure a parser.
type Options struct {
	// Reasoning starts the output inside a reasoning block (the prompt
	// already opened it, as thinking templates do).
	InReasoning bool
	// ToolCalls parses tool calls; when false they stay in the content.
	ToolCalls bool
	// Reasoning parses <think> blocks; when false they stay in the content.
	Reasoning bool
	// Tools are the request's OpenAI tool definitions. The XML-argument
	// formats (glm47, qwen3-coder) convert argument values to the JSON
	// types of the tool's parameter schema.
	Tools []json.RawMessage
}

// New returns the parser named format ("qwen3" or its alias "hermes",
// "glm47", "qwen3-coder").
func New(format string, opt Options) (Parser, error) {
	switch format {
	case "qwen3", "hermes":
		return newTagParser(opt, parseCall), nil
	case "glm47":
		s := newSchemas(opt.Tools)
		return newTagParser(opt, func(b string) ([]Call, bool) { return parseGLMCall(b, s) }), nil
	case "qwen3-coder":
		s := newSchemas(opt.Tools)
		return newTagParser(opt, func(b string) ([]Call, bool) { return parseCoderCall(b, s) }), nil
	}
	return nil, fmt.Errorf("toolcall: unknown format %q (known: qwen3, hermes, glm47, qwen3-coder)", format)
}

// ParseAll runs a whole text through p.
func ParseAll(p Parser, text string) Delta {
	d := p.Add(text)
	f := p.Flush()
	d.Content += f.Content
	d.Reasoning += f.Reasoning
	d.Calls = append(d.Calls, f.Calls...)
	return d
}

const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
	callOpen   = "<tool_call>"
	callClose  = "</tool_call>"
)

type state int

const (
	inContent state = iota
	inReasoning
	inCall
)

// tagParser is Qwen3's markup.
type tagParser struct {
	opt     Options
	parse   func(body string) ([]Call, bool) // the text between <tool_call> and </tool_call>
	st      state
	buf     string // text not yet emitted
	calls   int
	trimNL  bool // drop newlines at the start of the next part
	sawText bool // content emitted so far (non-space)
}

func newTagParser(opt Options, parse func(string) ([]Call, bool)) *tagParser {
	p := &tagParser{opt: opt, parse: parse}
	if opt.InReasoning && opt.Reasoning {
		p.st, p.trimNL = inReasoning, true
	}
	return p
}

func (p *tagParser) tags() []string {
	switch p.st {
	case inReasoning:
		return []string{thinkClose}
	case inCall:
		return []string{callClose}
	}
	var t []string
	if p.opt.Reasoning {
		t = append(t, thinkOpen)
	}
	if p.opt.ToolCalls {
		t = append(t, callOpen)
	}
	return t
}

func (p *tagParser) Add(text string) Delta {
	p.buf += text
	var d Delta
	for {
		tags := p.tags()
		at, tag := -1, ""
		for _, t := range tags {
			if i := strings.Index(p.buf, t); i >= 0 && (at < 0 || i < at) {
				at, tag = i, t
			}
		}
		if at < 0 {
			if p.st == inCall {
				return d // wait for the closing tag
			}
			keep := holdBack(p.buf, tags)
			if p.st == inContent || p.st == inReasoning {
				// Trailing whitespace waits for what follows it: whitespace
				// before a tool call or a closing tag is dropped.
				trimmed := strings.TrimRight(p.buf[:len(p.buf)-keep], " \t\r\n")
				keep = len(p.buf) - len(trimmed)
			}
			p.emit(&d, p.buf[:len(p.buf)-keep])
			p.buf = p.buf[len(p.buf)-keep:]
			return d
		}
		before := p.buf[:at]
		p.buf = p.buf[at+len(tag):]
		switch tag {
		case thinkOpen:
			p.emit(&d, before)
			p.st, p.trimNL = inReasoning, true
		case thinkClose:
			p.emit(&d, strings.TrimRight(before, " \t\r\n"))
			p.st, p.trimNL = inContent, true
		case callOpen:
			p.emit(&d, strings.TrimRight(before, " \t\r\n"))
			p.st = inCall
		case callClose:
			p.st, p.trimNL = inContent, true
			cs, ok := p.parse(before)
			if !ok {
				p.emit(&d, callOpen+before+callClose)
				continue
			}
			p.addCalls(&d, cs)
		}
	}
}

func (p *tagParser) emit(d *Delta, s string) {
	if p.trimNL {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			return
		}
		p.trimNL = false
	}
	if s == "" {
		return
	}
	if p.st == inReasoning {
		d.Reasoning += s
	} else {
		d.Content += s
	}
}

func (p *tagParser) Flush() Delta {
	var d Delta
	rest := p.buf
	p.buf = ""
	switch p.st {
	case inCall:
		// An unterminated call: a complete call still counts.
		if cs, ok := p.parse(rest); ok {
			p.addCalls(&d, cs)
			return d
		}
		p.st = inContent
		rest = callOpen + rest
	}
	p.emit(&d, strings.TrimRight(rest, " \t\r\n"))
	return d
}

func (p *tagParser) addCalls(d *Delta, cs []Call) {
	for _, c := range cs {
		c.Index = p.calls
		p.calls++
		d.Calls = append(d.Calls, c)
	}
}

// holdBack returns how many trailing bytes of s could start one of tags.
func holdBack(s string, tags []string) int {
	best := 0
	for _, t := range tags {
		for n := min(len(t)-1, len(s)); n > best; n-- {
			if strings.HasSuffix(s, t[:n]) {
				best = n
				break
			}
		}
	}
	return best
}

// parseCall reads {"name": ..., "arguments": {...}}.
func parseCall(s string) ([]Call, bool) {
	c, ok := parseJSONCall(s)
	if !ok {
		return nil, false
	}
	return []Call{c}, true
}

func parseJSONCall(s string) (Call, bool) {
	var raw struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	dec := json.NewDecoder(strings.NewReader(strings.TrimSpace(s)))
	if err := dec.Decode(&raw); err != nil || raw.Name == "" || dec.More() {
		return Call{}, false
	}
	args := bytes.TrimSpace(raw.Arguments)
	switch {
	case len(args) == 0 || string(args) == "null":
		args = []byte("{}")
	case args[0] == '"':
		// Some models send the arguments as a JSON string of JSON.
		var inner string
		if json.Unmarshal(args, &inner) == nil {
			args = []byte(inner)
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, args); err != nil {
		return Call{}, false
	}
	return Call{Name: raw.Name, Arguments: compact.String()}, true
}
