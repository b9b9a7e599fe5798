package pio

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestStopMatcher feeds text in pieces (as tokens decode) and checks what
// each Add hands out, then the whole: the text before the earliest stop
// string, or all of it (after Flush) when none occurs.
func TestStopMatcher(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stops  []string
		pieces []string
		outs   []string // by piece; after a stop, the rest are ""
		text   string   // everything handed out, Flush included
		stop   bool
	}{
		{
			name: "no stops", stops: nil,
			pieces: []string{"Hello", ", ", "world"}, outs: []string{"Hello", ", ", "world"},
			text: "Hello, world",
		},
		{
			name: "no match", stops: []string{"STOP"},
			pieces: []string{"abc", "S", "Tx"}, outs: []string{"abc", "", "STx"},
			text: "abcSTx",
		},
		{
			name: "held prefix at the end is flushed", stops: []string{"STOP"},
			pieces: []string{"abc", "ST"}, outs: []string{"abc", ""},
			text: "abcST",
		},
		{
			name: "stop spanning pieces", stops: []string{"</s>"},
			pieces: []string{"one <", "/", "s> two"}, outs: []string{"one ", "", ""},
			text: "one ", stop: true,
		},
		{
			name: "stop inside one piece", stops: []string{"\n\n"},
			pieces: []string{"a", "b\n\nc"}, outs: []string{"a", "b"},
			text: "ab", stop: true,
		},
		{
			name: "stop at the very start", stops: []string{"Hi"},
			pieces: []string{"Hi there", "more"}, outs: []string{"", ""},
			text: "", stop: true,
		},
		{
			name: "text after the stop is dropped", stops: []string{"x"},
			pieces: []string{"abxcd", "ef"}, outs: []string{"ab", ""},
			text: "ab", stop: true,
		},
		{
			// "ab" is held for "abc"; "abd" shows it was not, but "b"
			// still begins "bd!", which the next piece completes.
			name: "overlapping prefixes", stops: []string{"abc", "bd!"},
			pieces: []string{"xab", "d", "!"}, outs: []string{"x", "a", ""},
			text: "xa", stop: true,
		},
		{
			name: "earliest of two in one piece", stops: []string{"cd", "bcde"},
			pieces: []string{"ab", "cdef"}, outs: []string{"a", ""},
			text: "a", stop: true,
		},
		{
			name: "a stop inside a longer one", stops: []string{"abcd", "c"},
			pieces: []string{"ab", "c"}, outs: []string{"", "ab"},
			text: "ab", stop: true,
		},
		{
			name: "repeated prefix", stops: []string{"aab"},
			pieces: []string{"a", "a", "a", "b"}, outs: []string{"", "", "a", ""},
			text: "a", stop: true,
		},
		{
			// 。 is E3 80 82: its bytes arrive in three pieces.
			name: "multi-byte stop split across tokens", stops: []string{"。"},
			pieces: []string{"日本\xe3", "\x80", "\x82語"}, outs: []string{"日本", "", ""},
			text: "日本", stop: true,
		},
		{
			// é is C3 A9: half a character is never handed out.
			name: "multi-byte text split across tokens", stops: []string{"x"},
			pieces: []string{"caf\xc3", "\xa9!"}, outs: []string{"caf", "é!"},
			text: "café!",
		},
		{
			name: "multi-byte text split, no stops", stops: nil,
			pieces: []string{"\xf0\x9f", "\x98\x80", "ok"}, outs: []string{"", "😀", "ok"},
			text: "😀ok",
		},
		{
			name: "multi-byte stop prefix that does not complete", stops: []string{"。!"},
			pieces: []string{"a。", "b"}, outs: []string{"a", "。b"},
			text: "a。b",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newStopMatcher(tc.stops)
			var outs []string
			var all strings.Builder
			stopped := false
			for _, p := range tc.pieces {
				out, s := m.Add(p)
				if stopped && (!s || out != "") {
					t.Errorf("Add(%q) after the stop: %q, %v", p, out, s)
				}
				stopped = s
				outs = append(outs, out)
				all.WriteString(out)
			}
			all.WriteString(m.Flush())
			if d := cmp.Diff(outs, tc.outs); d != "" {
				t.Errorf("handed out by piece (-got +want):\n%s", d)
			}
			if all.String() != tc.text || stopped != tc.stop {
				t.Errorf("text %q, stopped %v; want %q, %v", all.String(), stopped, tc.text, tc.stop)
			}
		})
	}
}

// TestStopStringEndsTokens: a generation cut by a stop string ends with
// the token that completed it, however many tokens each step of the
// stream hands over (a slow callback lets them pile up).
func TestStopStringEndsTokens(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 32, MaxSeqs: 4, CacheTokens: 1024})
	full, err := e.Generate(context.Background(), "Hello world", greedy(12), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Text) < 4 {
		t.Skipf("greedy text %q is too short to take a stop string from", full.Text)
	}
	stop := full.Text[2:4]
	k := 1
	for !strings.Contains(e.text.Decode(full.Tokens[:k], true), stop) {
		k++
	}
	opt := greedy(12)
	opt.Stop = []string{stop}
	res, err := e.Generate(context.Background(), "Hello world", opt, func(Chunk) { time.Sleep(5 * time.Millisecond) })
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(res.Tokens, full.Tokens[:k]); d != "" || res.CompletionTokens != k || res.FinishReason != "stop" {
		t.Errorf("stop %q: finish %q, %d tokens, diff (-got +want):\n%s", stop, res.FinishReason, res.CompletionTokens, d)
	}
}
