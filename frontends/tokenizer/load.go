package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/dlclark/regexp2/v2"
)

// The subset of tokenizer.json that Load reads.
type fileJSON struct {
	AddedTokens  []addedTokenJSON `json:"added_tokens"`
	Normalizer   json.RawMessage  `json:"normalizer"`
	PreTokenizer json.RawMessage  `json:"pre_tokenizer"`
	Decoder      json.RawMessage  `json:"decoder"`
	Model        modelJSON        `json:"model"`
}

type addedTokenJSON struct {
	ID         int64  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type modelJSON struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	ByteFallback            bool              `json:"byte_fallback"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	Vocab                   map[string]int32  `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
}

type component struct {
	Type string `json:"type"`
	// Sequence
	Normalizers   []json.RawMessage `json:"normalizers"`
	Pretokenizers []json.RawMessage `json:"pretokenizers"`
	Decoders      []json.RawMessage `json:"decoders"`
	// Split
	Pattern  *struct{ Regex, String *string } `json:"pattern"`
	Behavior string                           `json:"behavior"`
	Invert   bool                             `json:"invert"`
	// ByteLevel
	AddPrefixSpace bool  `json:"add_prefix_space"`
	UseRegex       *bool `json:"use_regex"`
}

// gpt2Pattern is the regex HF's ByteLevel pre-tokenizer applies when use_regex is true.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// maxID bounds token ids: they are int32 in this package.
const maxID = math.MaxInt32 - 1

// maxVocab bounds the id space (tables are indexed by id), so a hostile tokenizer.json cannot
// make Load allocate gigabytes. The largest real vocabularies are about 260k.
const maxVocab = 1 << 22

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// Load builds a tokenizer from the bytes of tokenizer.json and, optionally (nil), of
// tokenizer_config.json, which supplies the chat template. Anything outside the supported subset
// (see the package documentation) is an error, never a silently different tokenizer.
func Load(tokenizerJSON, tokenizerConfigJSON []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	t := &Tokenizer{cache: newCache()}
	if err := t.loadModel(&f.Model); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	if err := t.loadNormalizer(f.Normalizer); err != nil {
		return nil, fmt.Errorf("tokenizer.json: normalizer: %w", err)
	}
	if err := t.loadPreTokenizer(f.PreTokenizer, true); err != nil {
		return nil, fmt.Errorf("tokenizer.json: pre_tokenizer: %w", err)
	}
	// post_processor is not read: it only adds special tokens (BOS, EOS) and offsets, and Encode
	// is HF's encode(add_special_tokens=False).
	if err := checkDecoder(f.Decoder); err != nil {
		return nil, fmt.Errorf("tokenizer.json: decoder: %w", err)
	}
	if err := t.loadAdded(f.AddedTokens); err != nil {
		return nil, fmt.Errorf("tokenizer.json: added_tokens: %w", err)
	}
	if tokenizerConfigJSON != nil {
		tmpl, err := chatTemplateFromConfig(tokenizerConfigJSON)
		if err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
		t.chatTemplate = tmpl
	}
	return t, nil
}

func (t *Tokenizer) loadModel(m *modelJSON) error {
	if m.Type != "BPE" {
		return fmt.Errorf("type %q is not supported (only BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return errors.New("BPE dropout is not supported")
	}
	if m.ByteFallback {
		return errors.New("byte_fallback BPE is not supported")
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" ||
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return errors.New("continuing_subword_prefix / end_of_word_suffix are not supported")
	}
	if len(m.Vocab) == 0 {
		return errors.New("empty vocab")
	}
	t.ignoreMerges = m.IgnoreMerges
	t.vocab = m.Vocab
	size := 0
	for tok, id := range m.Vocab {
		if id < 0 || id > maxID {
			return fmt.Errorf("token %q has id %d out of range", tok, id)
		}
		size = max(size, int(id)+1)
	}
	if size > maxVocab {
		return fmt.Errorf("ids up to %d: more than %d tokens", size-1, maxVocab)
	}
	t.tokens = make([]string, size)
	t.known = make([]bool, size)
	for tok, id := range t.vocab {
		if t.known[id] {
			return fmt.Errorf("id %d is used by %q and %q", id, t.tokens[id], tok)
		}
		t.tokens[id], t.known[id] = tok, true
	}
	for b := 0; b < 256; b++ {
		t.byteID[b] = -1
		if id, ok := t.vocab[string(byteToRune[b])]; ok {
			t.byteID[b] = id
		}
	}
	t.merges = make(map[uint64]merge, len(m.Merges))
	for rank, raw := range m.Merges {
		a, b, err := parseMerge(raw)
		if err != nil {
			return fmt.Errorf("merge %d: %w", rank, err)
		}
		ia, oka := t.vocab[a]
		ib, okb := t.vocab[b]
		in, okn := t.vocab[a+b]
		if !oka || !okb || !okn {
			return fmt.Errorf("merge %d (%q %q) uses a token missing from the vocab", rank, a, b)
		}
		key := pairKey(ia, ib)
		if _, dup := t.merges[key]; !dup { // the first (best) rank wins, as in HF
			t.merges[key] = merge{rank: int32(rank), id: in}
		}
	}
	return nil
}

func parseMerge(raw json.RawMessage) (string, string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' { // the older "a b" form
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", "", err
		}
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return "", "", fmt.Errorf("%q is not two tokens separated by a space", s)
		}
		return a, b, nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return "", "", fmt.Errorf("%s is neither \"a b\" nor [\"a\", \"b\"]", raw)
	}
	return pair[0], pair[1], nil
}

func (t *Tokenizer) loadNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	switch c.Type {
	case "NFC":
		t.nfc = true
		return nil
	case "Sequence":
		for _, r := range c.Normalizers {
			if err := t.loadNormalizer(r); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("type %q is not supported (only NFC)", c.Type)
}

func (t *Tokenizer) loadPreTokenizer(raw json.RawMessage, top bool) error {
	if isNull(raw) {
		if top {
			return errors.New("missing: a byte-level BPE needs a ByteLevel pre-tokenizer")
		}
		return nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	switch c.Type {
	case "Sequence":
		for _, r := range c.Pretokenizers {
			if err := t.loadPreTokenizer(r, false); err != nil {
				return err
			}
		}
	case "Split":
		if t.byteLevel {
			return errors.New("Split after ByteLevel is not supported")
		}
		if c.Pattern == nil || (c.Pattern.Regex == nil) == (c.Pattern.String == nil) {
			return errors.New("Split needs a pattern with exactly one of Regex or String")
		}
		if c.Invert {
			return errors.New("Split with invert=true is not supported")
		}
		s := splitter{}
		switch c.Behavior {
		case "Isolated":
		case "Removed":
			s.remove = true
		default:
			return fmt.Errorf("Split behavior %q is not supported (Isolated, Removed)", c.Behavior)
		}
		expr := ""
		if c.Pattern.Regex != nil {
			expr = *c.Pattern.Regex
		} else {
			expr = regexp2.Escape(*c.Pattern.String)
		}
		re, err := regexp2.Compile(expr)
		if err != nil {
			return fmt.Errorf("Split pattern %q: %w", expr, err)
		}
		s.re = re
		t.splits = append(t.splits, s)
	case "ByteLevel":
		if t.byteLevel {
			return errors.New("two ByteLevel pre-tokenizers")
		}
		if c.AddPrefixSpace {
			return errors.New("ByteLevel add_prefix_space=true is not supported")
		}
		t.byteLevel = true
		if c.UseRegex == nil || *c.UseRegex { // HF's default is true
			t.splits = append(t.splits, splitter{re: regexp2.MustCompile(gpt2Pattern)})
		}
	default:
		return fmt.Errorf("type %q is not supported (Sequence, Split, ByteLevel)", c.Type)
	}
	if top && !t.byteLevel {
		return errors.New("no ByteLevel pre-tokenizer: only byte-level BPE is supported")
	}
	return nil
}

func checkDecoder(raw json.RawMessage) error {
	if isNull(raw) {
		return errors.New("missing: a byte-level BPE needs a ByteLevel decoder")
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	if c.Type == "ByteLevel" {
		return nil
	}
	if c.Type == "Sequence" && len(c.Decoders) == 1 {
		return checkDecoder(c.Decoders[0])
	}
	return fmt.Errorf("type %q is not supported (only ByteLevel)", c.Type)
}

func (t *Tokenizer) loadAdded(list []addedTokenJSON) error {
	t.added = map[int32]*addedToken{}
	t.addedByContent = map[string]int32{}
	var raw, normed []*addedToken
	for _, a := range list {
		if a.ID < 0 || a.ID >= maxVocab {
			return fmt.Errorf("%q has id %d out of range", a.Content, a.ID)
		}
		if a.Content == "" {
			continue
		}
		id := int32(a.ID)
		tok := &addedToken{id: id, content: a.Content, singleWord: a.SingleWord, lstrip: a.LStrip,
			rstrip: a.RStrip, normalized: a.Normalized, special: a.Special}
		if prev, dup := t.added[id]; dup && prev.content != a.Content {
			return fmt.Errorf("id %d is both %q and %q", id, prev.content, a.Content)
		}
		t.added[id] = tok
		t.addedByContent[a.Content] = id
		if int(id) >= len(t.tokens) {
			grow := int(id) + 1 - len(t.tokens)
			t.tokens = append(t.tokens, make([]string, grow)...)
			t.known = append(t.known, make([]bool, grow)...)
		}
		t.tokens[id], t.known[id] = a.Content, true
		if a.Normalized {
			tok.pattern = t.normalize(a.Content)
			normed = append(normed, tok)
		} else {
			tok.pattern = a.Content
			raw = append(raw, tok)
		}
	}
	t.rawAdded = newMatcher(raw)
	t.normAdded = newMatcher(normed)
	return nil
}

// chatTemplateFromConfig reads "chat_template" from tokenizer_config.json: a string, or a list of
// {"name", "template"} from which the one named "default" is taken.
func chatTemplateFromConfig(b []byte) (string, error) {
	var cfg struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "", err
	}
	if isNull(cfg.ChatTemplate) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(cfg.ChatTemplate, &s); err == nil {
		return s, nil
	}
	var named []struct{ Name, Template string }
	if err := json.Unmarshal(cfg.ChatTemplate, &named); err != nil {
		return "", errors.New("chat_template is neither a string nor a list of {name, template}")
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	return "", nil
}
