package server

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/inference-pio/pio/pio"
)

// TokenByter is an Engine that can give a token's raw bytes. A byte-level
// BPE token may hold part of a UTF-8 character (a CJK character or an
// emoji is often two or three tokens): its text (pio.TokenLogprob.Text)
// then holds U+FFFD where those bytes were, and only the raw bytes let a
// client put the character back together, which is what the logprobs'
// bytes are for. TokenBytes returns nil for an id it does not know.
//
// The server uses the method when its engine has it, as *pio.Engine does
// (pio.Engine.TokenBytes); without it a token's bytes are its text's UTF-8
// bytes, right for every token that is whole characters (a partial token
// then reads as U+FFFD, [239, 191, 189], as vLLM returns it), and a prompt
// of token ids starts text_offset at 0.
type TokenByter interface {
	TokenBytes(id int32) []byte
}

var _ TokenByter = (*pio.Engine)(nil)

// tokenBytes returns t's raw bytes.
func (s *Server) tokenBytes(t pio.TokenLogprob) []byte {
	if tb, ok := s.eng.(TokenByter); ok {
		if b := tb.TokenBytes(t.Token); b != nil {
			return b
		}
	}
	return []byte(t.Text)
}

// escapeBytes writes b as text: valid UTF-8 as it is, every byte of an
// invalid or incomplete sequence as \xNN — how OpenAI names a token that
// is part of a character ("\xe4\xbd" for the first two bytes of 你).
func escapeBytes(b []byte) string {
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			fmt.Fprintf(&sb, `\x%02x`, b[0])
			size = 1
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

// chatToken is a token as chat logprobs name it: its text, or for a token
// that is not whole UTF-8 characters its bytes escaped ("\xe4\xbd").
func chatToken(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return escapeBytes(b)
}

// completionToken is a token as legacy completions logprobs name it: its
// text, or for a token that is not whole UTF-8 characters "bytes:" and its
// bytes escaped ("bytes:\xe4\xbd"), as OpenAI's completions do.
func completionToken(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return "bytes:" + escapeBytes(b)
}

type logprobEntry struct {
	Token       string         `json:"token"`
	Logprob     float32        `json:"logprob"`
	Bytes       []int          `json:"bytes"`
	TopLogprobs []logprobEntry `json:"top_logprobs"`
}

// chatLogprobs is a chat choice's logprobs: per token its name, its raw
// bytes (every byte: a multi-byte character's bytes all appear) and its
// alternatives'.
func (s *Server) chatLogprobs(lps []pio.Logprob) map[string]any {
	entry := func(t pio.TokenLogprob) logprobEntry {
		raw := s.tokenBytes(t)
		b := make([]int, len(raw))
		for i, c := range raw {
			b[i] = int(c)
		}
		return logprobEntry{Token: chatToken(raw), Logprob: t.Logprob, Bytes: b, TopLogprobs: []logprobEntry{}}
	}
	out := make([]logprobEntry, 0, len(lps))
	for _, lp := range lps {
		e := entry(lp.TokenLogprob)
		for _, t := range lp.Top {
			e.TopLogprobs = append(e.TopLogprobs, entry(t))
		}
		out = append(out, e)
	}
	return map[string]any{"content": out}
}

// textOffsets counts characters for completions' text_offset, which
// OpenAI gives in characters (Unicode code points) from the start of the
// prompt, as if echoed: token i's offset is the prompt's length plus the
// characters the tokens before it completed. A character split over tokens
// is counted when its last byte arrives, so the tokens before it share an
// offset; a byte that can never be part of a character counts as one.
type textOffsets struct {
	pos     int
	pending []byte // the bytes of a character not yet complete
}

// next returns the offset of a token of bytes b and moves past it.
func (o *textOffsets) next(b []byte) int {
	off := o.pos
	o.pending = append(o.pending, b...)
	keep := incompleteTail(o.pending)
	o.pos += utf8.RuneCount(o.pending[:len(o.pending)-keep])
	o.pending = append(o.pending[:0], o.pending[len(o.pending)-keep:]...)
	return off
}

// incompleteTail is how many bytes at the end of b start a character that
// needs more bytes.
func incompleteTail(b []byte) int {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(b); k++ {
		if c := b[len(b)-k]; c < utf8.RuneSelf {
			return 0
		} else if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-k:]) {
				return 0
			}
			return k
		}
	}
	return 0
}

// promptOffsets is the character count at the end of a completion prompt
// given as text or, when the engine gives token bytes, as token ids (a
// character the prompt's last token leaves incomplete is completed by the
// first ones generated). For token ids without token bytes it starts at 0:
// the server cannot read them back as text.
func (s *Server) promptOffsets(text string, ids []int32) textOffsets {
	if text != "" {
		return textOffsets{pos: utf8.RuneCountInString(text)}
	}
	var o textOffsets
	if tb, ok := s.eng.(TokenByter); ok {
		for _, id := range ids {
			o.next(tb.TokenBytes(id))
		}
	}
	return o
}

// completionLogprobs is a completions choice's logprobs in the legacy
// format; o carries the character count across streamed chunks.
func (s *Server) completionLogprobs(lps []pio.Logprob, o *textOffsets) map[string]any {
	toks, lp, offs := []string{}, []float32{}, []int{}
	tops := []map[string]float32{}
	for _, l := range lps {
		raw := s.tokenBytes(l.TokenLogprob)
		toks = append(toks, completionToken(raw))
		lp = append(lp, l.Logprob)
		offs = append(offs, o.next(raw))
		top := map[string]float32{}
		for _, t := range l.Top {
			top[completionToken(s.tokenBytes(t))] = t.Logprob
		}
		tops = append(tops, top)
	}
	return map[string]any{"tokens": toks, "token_logprobs": lp, "top_logprobs": tops, "text_offset": offs}
}
