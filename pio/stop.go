package pio

import (
	"strings"
	"unicode/utf8"
)

// stopMatcher finds a generation's first stop string in its text as the
// text streams in. It holds back what could still be the start of a stop
// string (the longest end of the text that begins one) and an incomplete
// UTF-8 character, and hands out the rest; at a stop string it hands out
// the text before it and takes nothing more. Stop strings are non-empty.
type stopMatcher struct {
	stops   []string
	pending string // received, not handed out
	stopped bool
}

func newStopMatcher(stops []string) *stopMatcher { return &stopMatcher{stops: stops} }

// Add takes the next piece of text and returns what can be handed out.
// stopped reports that a stop string is complete: out then ends where the
// earliest one in the text begins, and later calls return "", true.
func (m *stopMatcher) Add(text string) (out string, stopped bool) {
	if m.stopped {
		return "", true
	}
	s := m.pending + text
	// Every stop string in s ends in text (the held text holds none), so
	// the earliest is the one that begins first.
	at := -1
	for _, stop := range m.stops {
		if i := strings.Index(s, stop); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at >= 0 {
		m.pending, m.stopped = "", true
		return s[:at], true
	}
	keep := max(m.stopPrefix(s), incompleteRune(s))
	m.pending = s[len(s)-keep:]
	return s[:len(s)-keep], false
}

// Flush returns the text held back, at the end of the stream.
func (m *stopMatcher) Flush() string {
	out := m.pending
	m.pending = ""
	return out
}

// stopPrefix returns the length of the longest end of s that a stop
// string begins with (shorter than the stop string: s holds none whole).
func (m *stopMatcher) stopPrefix(s string) int {
	longest := 0
	for _, stop := range m.stops {
		for n := min(len(stop)-1, len(s)); n > longest; n-- {
			if strings.HasPrefix(stop, s[len(s)-n:]) {
				longest = n
				break
			}
		}
	}
	return longest
}

// incompleteRune returns the length of an incomplete UTF-8 encoding at the
// end of s (0 if none): the bytes of a character the next text completes.
func incompleteRune(s string) int {
	for n := 1; n < utf8.UTFMax && n <= len(s); n++ {
		if utf8.RuneStart(s[len(s)-n]) {
			if utf8.FullRuneInString(s[len(s)-n:]) {
				return 0
			}
			return n
		}
	}
	return 0
}
