package pio

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/inference-pio/pio/grammar"
	"github.com/inference-pio/pio/internal/schemacheck"
)

// TestGrammarSchemaValid: sampling at temperature 1 from the tiny model
// under a JSON Schema's grammar, every finished output is valid under the
// schema by an independent validator (santhosh-tekuri/jsonschema, formats
// asserted), over schemas of grammar/testdata; and a greedy request under
// the grammar of any object gives a JSON object.
func TestGrammarSchemaValid(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 64, MaxSeqs: 8, CacheTokens: 8192})
	prompt, err := e.Encode("Answer in JSON:")
	if err != nil {
		t.Fatal(err)
	}
	n := 50
	if testing.Short() {
		n = 8
	}
	one := 1.0
	var tokens, stopped int
	start := time.Now()
	for _, name := range []string{"get_weather", "booleans_nulls", "coordinates", "user_profile"} {
		sc := schemacheck.Load(t, "..", name)
		g, err := grammar.JSONSchema(sc.Src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seed := uint64(1000 + i)
				res, err := e.GenerateIDs(context.Background(), prompt, GenerateOptions{MaxTokens: 1024, Temperature: &one, Seed: &seed, Grammar: g}, nil)
				if err != nil {
					t.Errorf("%s seed %d: %v", name, seed, err)
					return
				}
				mu.Lock()
				tokens += res.CompletionTokens
				mu.Unlock()
				if res.FinishReason != "stop" {
					// Cut by the length: a prefix the grammar accepts.
					if !g.NewMatcher().AcceptString(res.Text) {
						t.Errorf("%s seed %d: truncated output %q is no prefix of the grammar", name, seed, res.Text)
					}
					return
				}
				mu.Lock()
				stopped++
				mu.Unlock()
				if err := sc.Validate(res.Text); err != nil {
					t.Errorf("%s seed %d: %q is invalid: %v", name, seed, res.Text, err)
				}
			}()
		}
		wg.Wait()
	}
	t.Logf("%d of %d outputs finished (all valid), %d tokens in %v", stopped, 4*n, tokens, time.Since(start))
	if stopped < 4*n*3/4 {
		t.Errorf("only %d of %d outputs finished within 1024 tokens", stopped, 4*n)
	}

	obj, err := grammar.JSONSchema([]byte(`{"type":"object"}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.GenerateIDs(context.Background(), prompt, GenerateOptions{MaxTokens: 256, Temperature: &zero, Grammar: obj}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A JSON object (UseNumber: the random model writes numbers no float64 holds).
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(res.Text))
	dec.UseNumber()
	if res.FinishReason == "stop" && dec.Decode(&m) != nil {
		t.Errorf("greedy json_object: %q is no JSON object", res.Text)
	}
	if res.FinishReason != "stop" && !obj.NewMatcher().AcceptString(res.Text) {
		t.Errorf("greedy json_object: %q (cut by the length) is no prefix of an object", res.Text)
	}
	t.Logf("greedy json_object (%s): %q", res.FinishReason, res.Text)
}

// TestGrammarAfterThinking: in Chat with thinking on, the model reasons
// unconstrained (every token but the ends) and the grammar starts after
// </think>; the answer of every finished chat is a JSON object.
func TestGrammarAfterThinking(t *testing.T) {
	e, _ := load(t, Options{MaxStepTokens: 64, MaxSeqs: 8, CacheTokens: 8192})
	g, err := grammar.JSONSchema([]byte(`{"type":"object"}`))
	if err != nil {
		t.Fatal(err)
	}
	// The gate itself, from inside the block.
	tt, err := e.thinkTokens("<|im_start|>assistant\n<think>\n", nil)
	if err != nil || tt == nil || !tt.inside {
		t.Fatalf("thinkTokens: %+v %v", tt, err)
	}
	c, err := e.constraint(g)
	if err != nil {
		t.Fatal(err)
	}
	gate := tt.gate(c)
	words := (e.vocab + 63) / 64
	mask := make([]uint64, words)
	gate.Mask(mask)
	for id := int32(0); id < int32(e.vocab); id++ {
		if on := mask[id/64]>>(uint(id)%64)&1 == 1; on == slices.Contains(c.gv.eos, id) {
			t.Fatalf("thinking: token %d allowed %v", id, on)
		}
	}
	brace, _ := e.text.TokenID("{")
	for _, id := range []int32{brace, 7, tt.open, tt.close} {
		if err := gate.Accept(id); err != nil {
			t.Fatalf("thinking: token %d: %v", id, err)
		}
	}
	want := make([]uint64, words)
	c2, _ := e.constraint(g)
	c2.Mask(want)
	clear(mask)
	gate.Mask(mask)
	if !slices.Equal(mask, want) {
		t.Fatal("after </think> the mask is not the grammar's start")
	}
	if a, ok := e.text.TokenID("a"); !ok || gate.Accept(a) == nil || gate.Accept(brace) != nil {
		t.Fatal("after </think> the grammar does not constrain: an object starts with {")
	}
	off := false
	if tt, _ := e.thinkTokens("<|im_start|>assistant\n", &off); tt != nil {
		t.Errorf("enable_thinking false: %+v, want the grammar from the first token", tt)
	}

	// Chats with thinking on.
	on, one := true, 1.0
	finished, reasoned := 0, 0
	for i := range 16 {
		seed := uint64(i)
		res, err := e.Chat(context.Background(), []Message{{Role: "user", Content: "Hi"}},
			ChatOptions{GenerateOptions: GenerateOptions{MaxTokens: 512, Temperature: &one, Seed: &seed, Grammar: g}, EnableThinking: &on}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.FinishReason != "stop" {
			continue
		}
		finished++
		if res.ReasoningContent != "" {
			reasoned++
		}
		var m map[string]any
		dec := json.NewDecoder(strings.NewReader(res.Content))
		dec.UseNumber()
		if err := dec.Decode(&m); err != nil {
			t.Errorf("seed %d: content %q (reasoning %q) is no JSON object: %v", seed, res.Content, res.ReasoningContent, err)
		}
	}
	t.Logf("%d of 16 chats finished (%d after reasoning), each answer a JSON object", finished, reasoned)
	if finished < 8 {
		t.Errorf("only %d of 16 chats finished", finished)
	}
}

// TestGrammarVocab: the engine's grammar vocabulary holds every model
// token's bytes, no added token (<|im_end|>, <think>: markup a parser
// would read) and the EOS and end-of-turn ids as the ends.
func TestGrammarVocab(t *testing.T) {
	e, _ := load(t, Options{})
	gv, err := e.grammarVocab()
	if err != nil {
		t.Fatal(err)
	}
	if gv2, _ := e.grammarVocab(); gv2 != gv {
		t.Error("the vocabulary is built again")
	}
	for _, s := range []string{"<|im_end|>", "<|im_start|>", "<think>", "</think>", "<tool_call>"} {
		if id, ok := e.text.TokenID(s); ok && gv.toks[id] != nil {
			t.Errorf("added token %s (%d) is text in the grammar vocabulary", s, id)
		}
	}
	if id, ok := e.text.TokenID("<|im_end|>"); !ok || !slices.Contains(gv.eos, id) {
		t.Errorf("<|im_end|> (%d, %v) is not among the ends %v", id, ok, gv.eos)
	}
	if id, ok := e.text.TokenID("{"); !ok || string(gv.toks[id]) != "{" {
		t.Errorf("token { (%d, %v) has bytes %q", id, ok, gv.toks[id])
	}
}
