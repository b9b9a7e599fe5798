package grammar

import "unicode/utf8"

type byteRange struct{ lo, hi byte }

// utf8Sequences splits the code points lo..hi (surrogates excluded) into
// sequences of byte ranges whose concatenations are exactly their UTF-8
// encodings (the construction of Rust's utf8-ranges).
func utf8Sequences(lo, hi rune) [][]byteRange {
	var out [][]byteRange
	var split func(lo, hi rune)
	split = func(lo, hi rune) {
		if lo > hi {
			return
		}
		if lo <= 0xDFFF && hi >= 0xD800 {
			split(lo, 0xD7FF)
			split(0xE000, hi)
			return
		}
		for _, m := range []rune{0x7F, 0x7FF, 0xFFFF} {
			if lo <= m && hi > m {
				split(lo, m)
				split(m+1, hi)
				return
			}
		}
		if hi < 0x80 {
			out = append(out, []byteRange{{byte(lo), byte(hi)}})
			return
		}
		n := utf8.RuneLen(lo)
		for i := 1; i < n; i++ {
			m := rune(1)<<(6*i) - 1
			if lo&^m != hi&^m {
				if lo&m != 0 {
					split(lo, lo|m)
					split(lo|m+1, hi)
					return
				}
				if hi&m != m {
					split(lo, hi&^m-1)
					split(hi&^m, hi)
					return
				}
			}
		}
		a := utf8.AppendRune(nil, lo)
		b := utf8.AppendRune(nil, hi)
		seq := make([]byteRange, len(a))
		for i := range a {
			seq[i] = byteRange{a[i], b[i]}
		}
		out = append(out, seq)
	}
	split(lo, hi)
	return out
}
