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
		p := newTagParser(opt, func(b string) ([]Call, bool) { return parseCoderCall(b, s) })
		p.bare = []string{functionOpen, functionClose} // Qwen3-Coder sometimes omits <tool_call>
		return p, nil
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

// tagParser is the <think>/<tool_call> machine all formats share; parse
// reads a call and bare, when set, opens a call without <tool_call>.
type tagParser struct {
	opt     Options
	parse   func(body string) ([]Call, bool) // the text between <tool_call> and </tool_call>
	bare    []string                         // an open tag that starts a call without <tool_call> ("<function=")
	open    string                           // the open tag of the call being read
	close   string                           // and its closing tag
	ws      string                           // the whitespace before open, restored if the call is malformed
	wsTrim  bool                             // trimNL when open came
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
		return []string{p.close}
	}
	var t []string
	if p.opt.Reasoning {
		t = append(t, thinkOpen)
	}
	if p.opt.ToolCalls {
		t = append(t, callOpen)
		if p.bare != nil {
			t = append(t, p.bare[0])
		}
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
		if p.st == inCall { // tag is the call's closing tag
			p.st = inContent
			cs, ok := p.parse(p.body(before))
			if !ok {
				p.trimNL = p.wsTrim
				p.emit(&d, p.ws+p.open+before+p.close)
				continue
			}
			p.trimNL = true
			p.addCalls(&d, cs)
			continue
		}
		switch tag {
		case thinkOpen:
			p.emit(&d, before)
			p.st, p.trimNL = inReasoning, true
		case thinkClose:
			p.emit(&d, strings.TrimRight(before, " \t\r\n"))
			p.st, p.trimNL = inContent, true
		default: // <tool_call>, or a bare call's open tag
			text := strings.TrimRight(before, " \t\r\n")
			p.emit(&d, text)
			p.st, p.open, p.close, p.ws, p.wsTrim = inCall, callOpen, callClose, before[len(text):], p.trimNL
			if p.bare != nil && tag == p.bare[0] {
				p.open, p.close = p.bare[0], p.bare[1]
			}
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
		if cs, ok := p.parse(p.body(rest)); ok {
			p.addCalls(&d, cs)
			return d
		}
		p.st, p.trimNL = inContent, p.wsTrim
		rest = p.ws + p.open + rest
	}
	p.emit(&d, strings.TrimRight(rest, " \t\r\n"))
	return d
}

// body is what the call parser reads of a call's text: for a bare call,
// the text with its own tags.
func (p *tagParser) body(s string) string {
	if p.open == callOpen {
		return s
	}
	return p.open + s + p.close
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
	if err := json.Compact(&compact, args); err != nil || compact.Len() == 0 || compact.Bytes()[0] != '{' {
		return Call{}, false // OpenAI's arguments are an object
	}
	return Call{Name: raw.Name, Arguments: compact.String()}, true
}
