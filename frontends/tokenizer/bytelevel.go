package tokenizer

import "unicode/utf8"

// byteToRune is GPT-2's reversible map from bytes to printable characters, which ByteLevel
// vocabularies are written in; runeToByte is its inverse.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// byteLevel returns s written in the ByteLevel alphabet (each byte as one character).
func byteLevel(s string) string {
	buf := make([]rune, len(s))
	for i := 0; i < len(s); i++ {
		buf[i] = byteToRune[s[i]]
	}
	return string(buf)
}

// appendTokenBytes appends the bytes a ByteLevel decoder makes of one token: each character
// mapped back to its byte, or, when any character is outside the alphabet (an added token such
// as "<|im_end|> " with a plain space), the token's own UTF-8 bytes, as HF does.
func appendTokenBytes(dst []byte, tok string) []byte {
	n := len(dst)
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return append(dst[:n], tok...)
		}
		dst = append(dst, b)
	}
	return dst
}

// appendLossy appends b to dst as valid UTF-8, replacing each maximal invalid subpart of b with
// U+FFFD exactly as Rust's String::from_utf8_lossy does (Go's strings.ToValidUTF8 would merge runs
// of invalid bytes into one replacement, and utf8.DecodeRune splits a truncated sequence into one
// replacement per byte).
func appendLossy(dst []byte, b []byte) []byte {
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, b[:size]...)
			b = b[size:]
			continue
		}
		dst = append(dst, "\uFFFD"...)
		b = b[invalidPrefix(b):]
	}
	return dst
}

// invalidPrefix is the length of the maximal subpart at the start of b, which does not begin
// with a valid UTF-8 sequence: the longest prefix that could start a valid sequence, at least 1.
func invalidPrefix(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF) // allowed range of the second byte
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 2
	case c == 0xE0:
		need, lo = 3, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 3
	case c == 0xED:
		need, hi = 3, 0x9F
	case c == 0xF0:
		need, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 4
	case c == 0xF4:
		need, hi = 4, 0x8F
	default:
		return 1
	}
	n := 1
	for n < need && n < len(b) {
		x := b[n]
		if n == 1 && (x < lo || x > hi) || n > 1 && (x < 0x80 || x > 0xBF) {
			break
		}
		n++
	}
	return n
}

// incompleteTail is the number of bytes at the end of b that form a proper prefix of a valid
// UTF-8 sequence (0 to 3): bytes a stream decoder holds back until the rest arrives.
func incompleteTail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		start := len(b) - k
		c := b[start]
		if c < 0x80 {
			return 0
		}
		if c >= 0xC0 { // a lead byte: is the tail a proper prefix of a sequence it starts?
			if c < 0xC2 || c > 0xF4 {
				return 0
			}
			if n := invalidPrefix(b[start:]); n == k && !utf8.FullRune(b[start:]) {
				return k
			}
			return 0
		}
	}
	return 0
}
