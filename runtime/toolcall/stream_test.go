package toolcall

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// collect runs in through a new parser in the given pieces and joins the
// deltas.
func collect(t *testing.T, format string, opt Options, pieces []string) Delta {
	t.Helper()
	p, err := New(format, opt)
	if err != nil {
		t.Fatal(err)
	}
	var got Delta
	join := func(d Delta) {
		got.Content += d.Content
		got.Reasoning += d.Reasoning
		got.Calls = append(got.Calls, d.Calls...)
	}
	for _, s := range pieces {
		join(p.Add(s))
	}
	join(p.Flush())
	return got
}

// checkStream asserts that in parses to want whole, cut in two at every
// byte boundary, cut in three around every boundary pair of a short
// window, and fed one byte at a time.
func checkStream(t *testing.T, name, format string, opt Options, in string, want Delta) {
	t.Helper()
	if got := collect(t, format, opt, []string{in}); !cmp.Equal(got, want) {
		t.Errorf("%s whole: (-got +want)\n%s", name, cmp.Diff(got, want))
		return
	}
	for i := 0; i <= len(in); i++ {
		if got := collect(t, format, opt, []string{in[:i], in[i:]}); !cmp.Equal(got, want) {
			t.Errorf("%s cut at %d: (-got +want)\n%s", name, i, cmp.Diff(got, want))
			return
		}
		for j := i + 1; j <= min(i+6, len(in)); j++ {
			if got := collect(t, format, opt, []string{in[:i], in[i:j], in[j:]}); !cmp.Equal(got, want) {
				t.Errorf("%s cut at %d and %d: (-got +want)\n%s", name, i, j, cmp.Diff(got, want))
				return
			}
		}
	}
	bytes := make([]string, len(in))
	for i := 0; i < len(in); i++ { // bytes, not runes
		bytes[i] = in[i : i+1]
	}
	if got := collect(t, format, opt, bytes); !cmp.Equal(got, want) {
		t.Errorf("%s byte by byte: (-got +want)\n%s", name, cmp.Diff(got, want))
	}
}

// fuzzParser is the shared body of the fuzz targets: no panic, the same
// split whole and in pieces of size bytes, and every call's arguments a
// JSON object (valid UTF-8 when the input is).
func fuzzParser(t *testing.T, format string, opt Options, s string, size int) {
	if size <= 0 || size > 64 {
		size = 1
	}
	var pieces []string
	for i := 0; i < len(s); i += size {
		pieces = append(pieces, s[i:min(i+size, len(s))])
	}
	got := collect(t, format, opt, pieces)
	whole := collect(t, format, opt, []string{s})
	if !cmp.Equal(got, whole) {
		t.Errorf("pieces of %d differ from whole: (-pieces +whole)\n%s", size, cmp.Diff(got, whole))
	}
	for _, c := range got.Calls {
		var obj map[string]any
		if err := json.Unmarshal([]byte(c.Arguments), &obj); err != nil {
			t.Errorf("call %q: arguments %q not a JSON object: %v", c.Name, c.Arguments, err)
		}
		if c.Name == "" {
			t.Errorf("call with no name: %+v", c)
		}
		if utf8.ValidString(s) && !utf8.ValidString(c.Arguments) {
			t.Errorf("invalid UTF-8 arguments %q", c.Arguments)
		}
	}
}
