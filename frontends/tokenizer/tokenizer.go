package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2/v2"
	"golang.org/x/text/unicode/norm"
)

// Tokenizer is a loaded tokenizer.json. It is safe for concurrent use.
type Tokenizer struct {
	vocab        map[string]int32 // model vocabulary, keys in the ByteLevel alphabet
	tokens       []string         // id -> token (model or added); "" where known is false
	known        []bool
	byteID       [256]int32       // id of each single-byte token, -1 if absent
	merges       map[uint64]merge // (left id, right id) -> rank and merged id
	ignoreMerges bool

	nfc       bool
	splits    []splitter // regex splits applied in order
	byteLevel bool

	added          map[int32]*addedToken
	addedByContent map[string]int32
	rawAdded       *matcher // added tokens with normalized=false, matched on the input
	normAdded      *matcher // normalized=true, matched on the normalized text

	chatTemplate string
	cache        *cache
}

type merge struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

type splitter struct {
	re     *regexp2.Regexp
	remove bool // behavior Removed: drop the matches, keep the gaps
}

type addedToken struct {
	id                                              int32
	content, pattern                                string
	singleWord, lstrip, rstrip, normalized, special bool
}

// VocabSize is one more than the largest token id (model vocabulary and added tokens). The
// model's embedding table may be larger (padding rows that no text produces).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// ChatTemplate is the Jinja chat template of tokenizer_config.json ("" if none or not given).
func (t *Tokenizer) ChatTemplate() string { return t.chatTemplate }

// TokenID returns the id of a token written as in tokenizer.json: an added token's content
// ("<|im_end|>") or a model token in the ByteLevel alphabet ("Ġthe").
func (t *Tokenizer) TokenID(s string) (int32, bool) {
	if id, ok := t.addedByContent[s]; ok {
		return id, true
	}
	id, ok := t.vocab[s]
	return id, ok
}

// IsAdded reports whether id is an added token (tokenizer.json's added_tokens: <|im_end|>,
// and <think> or <tool_call> where they are not marked special), which Encode matches whole
// rather than spelling it from the model's vocabulary.
func (t *Tokenizer) IsAdded(id int32) bool {
	_, ok := t.added[id]
	return ok
}

// IsSpecial reports whether id is an added token marked special (skipped by Decode when asked).
func (t *Tokenizer) IsSpecial(id int32) bool {
	a, ok := t.added[id]
	return ok && a.special
}

func (t *Tokenizer) normalize(s string) string {
	if t.nfc {
		return norm.NFC.String(s)
	}
	return s
}

// Encode returns the token ids of text, as HF tokenizers' encode(text, add_special_tokens=False):
// added tokens (special or not) written in the text become their ids; no BOS/EOS is added.
func (t *Tokenizer) Encode(text string) []int32 {
	var ids []int32
	for _, seg := range t.rawAdded.split(text) {
		if seg.id >= 0 {
			ids = append(ids, seg.id)
			continue
		}
		for _, s := range t.normAdded.split(t.normalize(seg.text)) {
			if s.id >= 0 {
				ids = append(ids, s.id)
				continue
			}
			ids = t.encodeText(ids, s.text)
		}
	}
	return ids
}

// encodeText pre-tokenizes normalized text without added tokens and appends the BPE of each piece.
func (t *Tokenizer) encodeText(ids []int32, s string) []int32 {
	if s == "" {
		return ids
	}
	pieces := []string{s}
	for _, sp := range t.splits {
		var next []string
		for _, p := range pieces {
			next = sp.split(next, p)
		}
		pieces = next
	}
	for _, p := range pieces {
		ids = t.bpe(ids, p)
	}
	return ids
}

// split appends to dst the pieces of s: matches and the gaps between them (behavior Isolated), or
// only the gaps (Removed). Empty pieces are dropped, as HF does.
func (sp splitter) split(dst []string, s string) []string {
	locs, err := sp.re.FindAllStringIndex(s, -1)
	if err != nil { // only a timeout or stack limit; keep the text whole rather than lose it
		return append(dst, s)
	}
	prev := 0
	for _, l := range locs {
		if l[0] > prev {
			dst = append(dst, s[prev:l[0]])
		}
		if !sp.remove && l[1] > l[0] {
			dst = append(dst, s[l[0]:l[1]])
		}
		prev = l[1]
	}
	if prev < len(s) {
		dst = append(dst, s[prev:])
	}
	return dst
}

// segment is a piece of text, or an added token (id >= 0) found in it.
type segment struct {
	text string
	id   int32
}

// matcher finds added tokens leftmost-longest, as HF's Aho-Corasick (MatchKind::LeftmostLongest).
type matcher struct {
	byFirst [256][]*addedToken // candidates by first byte, longest first
}

func newMatcher(toks []*addedToken) *matcher {
	m := &matcher{}
	for _, tok := range toks {
		if tok.pattern == "" {
			continue
		}
		c := tok.pattern[0]
		l := append(m.byFirst[c], tok)
		for i := len(l) - 1; i > 0 && len(l[i].pattern) > len(l[i-1].pattern); i-- {
			l[i], l[i-1] = l[i-1], l[i]
		}
		m.byFirst[c] = l
	}
	return m
}

// split cuts s at the added tokens it contains, honouring single_word, lstrip and rstrip as HF's
// AddedVocabulary::find_matches does.
func (m *matcher) split(s string) []segment {
	var out []segment
	start := 0 // end of the previous match
	for i := 0; i < len(s); {
		tok := m.longestAt(s, i)
		if tok == nil {
			i++
			continue
		}
		mStart, mStop := i, i+len(tok.pattern)
		i = mStop
		if tok.singleWord {
			if mStart > 0 && endsWithWord(s[:mStart]) || mStop < len(s) && startsWithWord(s[mStop:]) {
				continue
			}
		}
		if tok.lstrip {
			mStart = max(len(strings.TrimRightFunc(s[:mStart], unicode.IsSpace)), start)
		}
		if tok.rstrip {
			mStop = len(s) - len(strings.TrimLeftFunc(s[mStop:], unicode.IsSpace))
			i = mStop
		}
		if start < mStart {
			out = append(out, segment{text: s[start:mStart], id: -1})
		}
		out = append(out, segment{text: s[mStart:mStop], id: tok.id})
		start = mStop
	}
	if start < len(s) {
		out = append(out, segment{text: s[start:], id: -1})
	}
	return out
}

func (m *matcher) longestAt(s string, i int) *addedToken {
	for _, tok := range m.byFirst[s[i]] {
		if strings.HasPrefix(s[i:], tok.pattern) {
			return tok
		}
	}
	return nil
}

// isWord is Rust regex's Unicode \w: alphabetic, marks, decimal digits, connector punctuation,
// join controls.
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Other_Alphabetic, r) || unicode.Is(unicode.Nl, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D
}

func endsWithWord(s string) bool {
	r, _ := utf8.DecodeLastRuneInString(s)
	return isWord(r)
}

func startsWithWord(s string) bool {
	r, _ := utf8.DecodeRuneInString(s)
	return isWord(r)
}

// Decode returns the text of ids as HF tokenizers' decode: the ByteLevel decoding of the tokens
// joined, invalid UTF-8 replaced by U+FFFD. Special added tokens are left out when skipSpecial;
// unknown ids are left out always.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) string {
	var b []byte
	for _, id := range ids {
		b = t.appendID(b, id, skipSpecial)
	}
	return string(appendLossy(nil, b))
}

// TokenBytes returns the raw bytes of one token: its ByteLevel decoding alone, before invalid
// UTF-8 is replaced, so a token holding part of a character gives that part ("\xe4\xbd" of 你)
// where Decode gives U+FFFD. An added token, special or not, gives its content as Decode does
// with skipSpecial false. It returns nil for an id the tokenizer does not know. The bytes of a
// sequence of ids joined are what Decode turns into text.
func (t *Tokenizer) TokenBytes(id int32) []byte { return t.appendID(nil, id, false) }

func (t *Tokenizer) appendID(b []byte, id int32, skipSpecial bool) []byte {
	if id < 0 || int(id) >= len(t.tokens) || !t.known[id] {
		return b
	}
	if a, ok := t.added[id]; ok && skipSpecial && a.special {
		return b
	}
	return appendTokenBytes(b, t.tokens[id])
}
