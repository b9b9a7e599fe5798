package pio

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/inference-pio/pio/grammar"
)

// grammarVocab is the engine's vocabulary for grammar masks, built once
// on the first constrained request: every token id's bytes (TokenBytes),
// added tokens (special or not: <think> and <tool_call> of Qwen3 are not
// special, and a chat parser would read them as markup) as no text, and
// the end-of-sequence ids (eos, then the chat end of turn) as the tokens
// allowed only where a grammar may end. Text the grammar accepts can
// still spell an added token's content from the model's own tokens.
type grammarVocab struct {
	v    *grammar.Vocab
	toks [][]byte
	eos  []int32
}

func (e *Engine) grammarVocab() (*grammarVocab, error) {
	if e.text == nil {
		return nil, fmt.Errorf("pio: structured output needs a tokenizer: %w", e.noTok)
	}
	e.gvOnce.Do(func() { e.gv = e.buildVocab(nil) })
	return e.gv, nil
}

// toolMarkup is the markup of the tool-call formats (toolcall.Grammar)
// that tokenizers hold as added tokens: Qwen3's <tool_call> and
// </tool_call>, GLM-4.7's <arg_key> and <arg_value> pairs.
var toolMarkup = []string{"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"}

// markupVocab is grammarVocab with the added tokens of toolMarkup as the
// text they spell, for the tool-call grammars: a model writes its call
// markup with the token it was trained to use, not spelled from ordinary
// tokens. Only tokens that decode to their text count (a special token,
// which decoding skips, would never reach the tool-call parser). The
// grammars keep the markup out of the values (raw text avoids it, JSON
// strings have no raw "<"), so the tokens can only stand where the
// grammar puts the markup.
func (e *Engine) markupVocab() (*grammarVocab, error) {
	if e.text == nil {
		return nil, fmt.Errorf("pio: structured output needs a tokenizer: %w", e.noTok)
	}
	e.mvOnce.Do(func() {
		markup := map[int32][]byte{}
		for _, s := range toolMarkup {
			if id, ok := e.text.TokenID(s); ok && e.text.Decode([]int32{id}, true) == s {
				markup[id] = []byte(s)
			}
		}
		e.mv = e.buildVocab(markup)
	})
	return e.mv, nil
}

// buildVocab arranges the vocabulary; markup gives added tokens that are
// text.
func (e *Engine) buildVocab(markup map[int32][]byte) *grammarVocab {
	toks := make([][]byte, e.vocab)
	for id := range toks {
		if e.text.IsAdded(int32(id)) {
			toks[id] = markup[int32(id)] // markup, never inside the constrained output, but for these
			continue
		}
		toks[id] = e.text.TokenBytes(int32(id))
	}
	eos := slices.Concat(e.eos, e.chatEOS)
	for _, id := range eos {
		if id >= 0 && int(id) < len(toks) {
			toks[id] = nil
		}
	}
	return &grammarVocab{v: grammar.NewVocab(toks, eos), toks: toks, eos: eos}
}

// grammarConstraint is a grammar following one generation's tokens
// (sample.Constraint).
type grammarConstraint struct {
	gv    *grammarVocab
	m     *grammar.Matcher
	ended bool // an end-of-sequence token was accepted
	buf   []uint64
}

func (c *grammarConstraint) Mask(dst []uint64) {
	if c.ended {
		return
	}
	n := c.gv.v.MaskWords()
	if len(dst) >= n {
		c.gv.v.Mask(c.m, dst[:n])
		return
	}
	if len(c.buf) < n {
		c.buf = make([]uint64, n)
	}
	c.gv.v.Mask(c.m, c.buf)
	copy(dst, c.buf)
}

var errGrammarRejects = errors.New("pio: the grammar rejects the token")

func (c *grammarConstraint) Accept(id int32) error {
	if c.ended {
		return errGrammarRejects
	}
	if slices.Contains(c.gv.eos, id) {
		if !c.m.CanEnd() {
			return errGrammarRejects
		}
		c.ended = true
		return nil
	}
	if id < 0 || int(id) >= len(c.gv.toks) || len(c.gv.toks[id]) == 0 || !c.m.Accept(c.gv.toks[id]) {
		return fmt.Errorf("%w: token %d", errGrammarRejects, id)
	}
	return nil
}

func (c *grammarConstraint) Done() bool { return c.ended || c.m.Done() }

// constraint returns a fresh constraint of g over the engine's vocabulary.
func (e *Engine) constraint(g *grammar.Grammar) (*grammarConstraint, error) {
	return e.constraintOver(g, false)
}

// constraintOver is constraint, over the vocabulary with the tool-call
// markup tokens when markup is set.
func (e *Engine) constraintOver(g *grammar.Grammar, markup bool) (*grammarConstraint, error) {
	vocab := e.grammarVocab
	if markup {
		vocab = e.markupVocab
	}
	gv, err := vocab()
	if err != nil {
		return nil, err
	}
	return &grammarConstraint{gv: gv, m: g.NewMatcher()}, nil
}

// thinkingOpen reports whether a rendered chat prompt leaves the model
// inside a reasoning block (the template turned thinking on).
func thinkingOpen(prompt string) bool {
	return strings.HasSuffix(strings.TrimRight(prompt, "\n"), "<think>")
}

// thinkTokens are a reasoning model's <think> and </think> ids and where a
// chat generation starts: inside the block, or where one may open.
type thinkTokens struct {
	open, close int32
	inside      bool // the prompt opened the block
	mayOpen     bool // the first token may open one
}

// thinkTokens says how a grammar starts in a chat whose rendered prompt is
// prompt: nil when the model does not reason (the grammar starts at the
// first token), an error when the prompt opens a reasoning block the
// tokenizer cannot close.
func (e *Engine) thinkTokens(prompt string, enable *bool) (*thinkTokens, error) {
	open, ok1 := e.text.TokenID("<think>")
	closeID, ok2 := e.text.TokenID("</think>")
	inside := thinkingOpen(prompt)
	if !ok1 || !ok2 {
		if inside {
			return nil, fmt.Errorf("pio: %w: the prompt opens a reasoning block and the tokenizer has no </think> token: a grammar (response_format) cannot start after it; set enable_thinking false", ErrInvalid)
		}
		return nil, nil
	}
	if !inside && enable != nil && !*enable {
		return nil, nil
	}
	return &thinkTokens{open: open, close: closeID, inside: inside, mayOpen: !inside}, nil
}

func (t *thinkTokens) gate(c *grammarConstraint) *thinkGate {
	g := &thinkGate{t: *t, inner: c, state: gateMayOpen}
	if t.inside {
		g.state = gateThinking
	}
	return g
}

// thinkGate is a grammar that starts after the model's reasoning
// (sample.Constraint): while reasoning, every token but the ends may come
// (so a reasoning cut by max_tokens leaves no JSON, and a random model
// cannot end the turn before answering); </think> starts the grammar.
type thinkGate struct {
	t     thinkTokens
	inner *grammarConstraint
	state int
}

const (
	gateMayOpen  = iota // the first token: the grammar's, or <think>
	gateThinking        // inside the block, until </think>
	gateGrammar         // the answer
)

func (g *thinkGate) Mask(dst []uint64) {
	switch g.state {
	case gateThinking:
		for i := range dst {
			dst[i] = ^uint64(0)
		}
		for _, id := range g.inner.gv.eos {
			if int(id/64) < len(dst) {
				dst[id/64] &^= 1 << (uint(id) % 64)
			}
		}
	case gateMayOpen:
		g.inner.Mask(dst)
		if id := g.t.open; int(id/64) < len(dst) {
			dst[id/64] |= 1 << (uint(id) % 64)
		}
	default:
		g.inner.Mask(dst)
	}
}

func (g *thinkGate) Accept(id int32) error {
	switch g.state {
	case gateMayOpen:
		if id == g.t.open {
			g.state = gateThinking
			return nil
		}
		g.state = gateGrammar
	case gateThinking:
		if slices.Contains(g.inner.gv.eos, id) {
			return errGrammarRejects
		}
		if id == g.t.close {
			g.state = gateGrammar
		}
		return nil
	}
	return g.inner.Accept(id)
}

func (g *thinkGate) Done() bool { return g.state == gateGrammar && g.inner.Done() }
