package tokenizer

// StreamDecoder decodes ids one at a time, for streaming output. The concatenation of what Add
// returns and Flush is exactly Decode of all the ids: bytes that may still complete a UTF-8
// character are held back until the next id (or Flush) decides them. Not safe for concurrent use.
type StreamDecoder struct {
	t           *Tokenizer
	skipSpecial bool
	pending     []byte
}

// NewStreamDecoder returns a decoder for one stream of ids.
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) *StreamDecoder {
	return &StreamDecoder{t: t, skipSpecial: skipSpecial}
}

// Add decodes one more id and returns the text it completes ("" while a character is incomplete).
func (d *StreamDecoder) Add(id int32) string {
	d.pending = d.t.appendID(d.pending, id, d.skipSpecial)
	keep := incompleteTail(d.pending)
	if keep == len(d.pending) {
		return ""
	}
	out := string(appendLossy(nil, d.pending[:len(d.pending)-keep]))
	d.pending = append(d.pending[:0], d.pending[len(d.pending)-keep:]...)
	return out
}

// Flush returns what is held back (an incomplete character becomes U+FFFD) and resets the decoder.
func (d *StreamDecoder) Flush() string {
	out := string(appendLossy(nil, d.pending))
	d.pending = d.pending[:0]
	return out
}
