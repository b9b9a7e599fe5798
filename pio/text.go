package pio

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// textCodec is what the engine needs of a tokenizer and a chat template
// renderer (frontends/tokenizer, frontends/chat).
type textCodec interface {
	Encode(text string) []int32
	Decode(ids []int32, skipSpecial bool) string
	NewStreamDecoder(skipSpecial bool) streamDecoder
	TokenID(s string) (int32, bool)
	TokenBytes(id int32) []byte
	IsAdded(id int32) bool
	Render(msgs []Message, opt templateOptions) (string, error)
}

type streamDecoder interface {
	Add(id int32) string
	Flush() string
}

type templateOptions struct {
	EnableThinking *bool
	Tools          []json.RawMessage
	Extra          map[string]any
}

// loadText builds the engine's text codec from its tokenizer files; an
// engine without them can still generate from token ids.
var loadText = func(tokenizerJSON, tokenizerConfigJSON []byte, template string) (textCodec, error) {
	return nil, fmt.Errorf("no tokenizer support built in")
}

func randSeed() uint64 { return rand.Uint64() }

func newCallID() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 24)
	for i := range b {
		b[i] = letters[rand.IntN(len(letters))]
	}
	return "call_" + string(b)
}
