package grammar

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, src string) *Grammar {
	t.Helper()
	g, err := Parse(src)
	if err != nil {
		t.Fatalf("Parse(%q): %v", src, err)
	}
	return g
}

// matches reports whether the whole of s is a sentence of g.
func matches(g *Grammar, s string) bool {
	m := g.NewMatcher()
	return m.AcceptString(s) && m.CanEnd()
}

func TestParseAndMatch(t *testing.T) {
	for _, tc := range []struct {
		grammar string
		accept  []string
		reject  []string
	}{
		{`root ::= "a" | "bc"`, []string{"a", "bc"}, []string{"", "b", "abc", "ab"}},
		{`root ::= [a-c]+ "!"?`, []string{"a", "abc!", "cccc"}, []string{"", "!", "d", "a!!"}},
		{`root ::= x{2,4}
x ::= "ab"`, []string{"abab", "ababab", "abababab"}, []string{"ab", "ababababab"}},
		{`root ::= "x"{3}`, []string{"xxx"}, []string{"xx", "xxxx"}},
		{`root ::= "x"{2,}`, []string{"xx", "xxxxxx"}, []string{"x"}},
		{`root ::= [^a]`, []string{"b", "é", "日", "😀"}, []string{"a", "", "bb"}},
		{`root ::= .+`, []string{"héllo wörld", "\n"}, []string{""}},
		{`root ::= [α-ω]*`, []string{"", "αβγ", "ω"}, []string{"a", "Α"}},
		{`root ::= "\x41\u00e9\n\"\\" # comment`, []string{"Aé\n\"\\"}, []string{"A"}},
		{"root ::= ( \"a\"\n | \"b\" )\n  # a comment line\n", []string{"a", "b"}, []string{"ab"}},
		// Right recursion: the list grows without deepening the stacks.
		{`root ::= "[" (v ("," v)*)? "]"
v ::= [0-9]+ | root`, []string{"[]", "[1,2,3]", "[[1],[[]],22]"}, []string{"[", "[1,]", "[,1]"}},
		// Ambiguity is fine: both alternatives live until one dies.
		{`root ::= "ab" "c" | "a" "bd" | [a-z]*`, []string{"abc", "abd", "abcd", ""}, []string{"abc1"}},
	} {
		g := mustParse(t, tc.grammar)
		for _, s := range tc.accept {
			if !matches(g, s) {
				t.Errorf("%q: rejects %q", tc.grammar, s)
			}
		}
		for _, s := range tc.reject {
			if matches(g, s) {
				t.Errorf("%q: accepts %q", tc.grammar, s)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ grammar, want string }{
		{``, "line 1, column 1: empty grammar"},
		{`root ::= "a`, "line 1, column 10: unterminated string literal"},
		{"root ::= \"a\"\nx ::= y", "line 2, column 7: undefined rule \"y\""},
		{`root ::= [b-a]`, "column 13: class range 'b'-'a' is reversed"},
		{`root ::= ("a"`, "column 10: unclosed group"},
		{`root ::= "a"{3,1}`, "maximum below minimum"},
		{`root ::= "a"{99999}`, "repetition count over"},
		{`root ::= "\q"`, "unknown escape \\q"},
		{`x ::= "a"`, "no rule named root"},
		{"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule \"root\" defined twice"},
		{`root ::= root "a" | "b"`, "left recursion: root -> root"},
		{"root ::= x \"a\"\nx ::= \"y\"? root", "left recursion: root -> x -> root"},
		{`root ::= ("a"?)*`, "left recursion"},
		{`root ::= "a" )`, "unexpected \")\""},
		{`root "a"`, "expected ::="},
	} {
		_, err := Parse(tc.grammar)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.grammar, err, tc.want)
		}
	}
	var se *SyntaxError
	if _, err := Parse(`root ::= [`); !errors.As(err, &se) || se.Line != 1 || se.Col != 10 {
		t.Errorf("Parse error %v: want a *SyntaxError at 1:10", err)
	}
}

func TestUTF8Sequences(t *testing.T) {
	// Every code point of a range, and none outside it, is matched.
	for _, r := range []runeRange{{0, 0x10FFFF}, {0x7F, 0x800}, {0x3A0, 0x10400}, {0xD000, 0xE100}} {
		seqs := utf8Sequences(r.lo, r.hi)
		in := func(b []byte) bool {
		next:
			for _, seq := range seqs {
				if len(seq) != len(b) {
					continue
				}
				for i := range seq {
					if b[i] < seq[i].lo || b[i] > seq[i].hi {
						continue next
					}
				}
				return true
			}
			return false
		}
		for c := rune(0); c <= 0x10FFFF; c += 7 {
			if c >= 0xD800 && c <= 0xDFFF {
				continue
			}
			want := c >= r.lo && c <= r.hi
			if got := in([]byte(string(c))); got != want {
				t.Fatalf("range %x-%x: %U matched=%v", r.lo, r.hi, c, got)
			}
		}
	}
}

func TestClone(t *testing.T) {
	g := mustParse(t, `root ::= "ab" | "ac"`)
	m := g.NewMatcher()
	m.AcceptString("a")
	c := m.Clone()
	if !m.AcceptString("b") || !m.CanEnd() {
		t.Fatal("ab rejected")
	}
	if !c.AcceptString("c") || !c.CanEnd() {
		t.Fatal("clone: ac rejected")
	}
	if m.AcceptString("x") {
		t.Fatal("abx accepted")
	}
	if !m.CanEnd() || !m.Done() {
		t.Fatal("a failed Accept changed the matcher")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`root ::= "a" | [b-z]+ x*` + "\nx ::= (\"(\" root \")\"){0,3}", `root ::= [^"\\] .`, "root ::= x?\nx ::= \"\\u00e9\"{2,5}"} {
		f.Add(s, []byte("a(b)"))
	}
	f.Fuzz(func(t *testing.T, src string, input []byte) {
		if len(src) > 4096 || len(input) > 256 {
			return
		}
		start := time.Now()
		g, err := Parse(src)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Parse took %v", d)
		}
		if err != nil {
			return
		}
		m := g.NewMatcher()
		for _, c := range input {
			start := time.Now()
			m.Accept([]byte{c})
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Accept(%q) took %v", c, d)
			}
		}
		m.CanEnd()
	})
}
