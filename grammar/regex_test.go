package grammar

import (
	"regexp"
	"strings"
	"testing"
)

func TestRegex(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		accept  []string
		reject  []string
	}{
		{`\d{3}-\d{4}`, []string{"555-1234"}, []string{"55-1234", "555-12345", "abc-defg"}},
		{`^(cat|dog)s?$`, []string{"cat", "dogs"}, []string{"cats!", "bird"}},
		{`[A-Z][a-z]*( [A-Z][a-z]*)*`, []string{"Hello World", "A"}, []string{"hello", "Hello  World"}},
		{`\w+@\w+\.com`, []string{"a_b@c1.com"}, []string{"a@b.org"}},
		{`[^\s]+`, []string{"héllo"}, []string{"a b", ""}},
		{`a.c`, []string{"abc", "aéc"}, []string{"a\nc", "ac"}},
		{`(?:ab){2,}?x{0,2}`, []string{"abab", "abababxx"}, []string{"ab", "ababxxx"}},
		{`[\d.\-]+`, []string{"1.5-2"}, []string{"1e5"}},
		{`\x41é\.\*`, []string{"Aé.*"}, []string{"Ae.*"}},
		{``, []string{""}, []string{"a"}},
	} {
		g, err := Regex(tc.pattern)
		if err != nil {
			t.Errorf("Regex(%q): %v", tc.pattern, err)
			continue
		}
		re := regexp.MustCompile(`^(?:` + strings.TrimSuffix(strings.TrimPrefix(tc.pattern, "^"), "$") + `)$`)
		for _, s := range tc.accept {
			if !matches(g, s) || !re.MatchString(s) {
				t.Errorf("%q: grammar %v, regexp %v on %q; want both true", tc.pattern, matches(g, s), re.MatchString(s), s)
			}
		}
		for _, s := range tc.reject {
			if matches(g, s) || re.MatchString(s) {
				t.Errorf("%q: grammar %v, regexp %v on %q; want both false", tc.pattern, matches(g, s), re.MatchString(s), s)
			}
		}
	}
}

func TestRegexUnicodeEscape(t *testing.T) {
	g, err := Regex(`\u00e9+`)
	if err != nil || !matches(g, "éé") || matches(g, "e") {
		t.Errorf("Regex(\\u00e9+): err %v, or the wrong language", err)
	}
}

func TestRegexErrors(t *testing.T) {
	for _, tc := range []struct{ pattern, want string }{
		{`a(?=b)`, "lookaround"},
		{`(ab`, "missing )"},
		{`[ab`, "missing ]"},
		{`*a`, "without an operand"},
		{`a^b`, "anchor"},
		{`\1`, "unsupported escape"},
		{`a{5,2}`, "bad repetition"},
	} {
		if _, err := Regex(tc.pattern); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Regex(%q) = %v, want an error containing %q", tc.pattern, err, tc.want)
		}
	}
}

func TestChoice(t *testing.T) {
	g, err := Choice([]string{"yes", "no", `"quoted"`, "y"})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"yes": true, "no": true, `"quoted"`: true, "y": true, "ye": false, "": false} {
		if matches(g, s) != want {
			t.Errorf("Choice: %q matched=%v, want %v", s, !want, want)
		}
	}
	if _, err := Choice(nil); err == nil {
		t.Error("Choice(nil): no error")
	}
}

func FuzzRegex(f *testing.F) {
	f.Add(`^[a-z]+(\d{2,3}|x)?$`, "abc12")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if len(pattern) > 256 {
			return
		}
		g, err := Regex(pattern)
		if err != nil {
			return
		}
		// Where Go's regexp reads the pattern the same way, the two agree.
		if strings.ContainsAny(pattern, `\[.{^$`) {
			return
		}
		re, err := regexp.Compile(`^(?:` + pattern + `)$`)
		if err != nil || !utf8Valid(s) {
			return
		}
		if got, want := matches(g, s), re.MatchString(s); got != want {
			t.Fatalf("Regex(%q) on %q: %v, regexp says %v", pattern, s, got, want)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }
