package pio

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/runtime/sample"
)

// TestGenerationConfigDefaults: a field the request leaves out takes the
// model's generation_config value, else OpenAI's default; a field it sets
// wins.
func TestGenerationConfigDefaults(t *testing.T) {
	gen, err := hf.ParseGenerationConfig([]byte(`{"do_sample": true, "temperature": 0.6, "top_k": 20, "top_p": 0.95, "eos_token_id": [1, 2]}`), "generation_config.json")
	if err != nil {
		t.Fatal(err)
	}
	seed := uint64(9)
	withGen := &Engine{gen: gen}
	for _, tc := range []struct {
		name string
		e    *Engine
		opt  GenerateOptions
		want sample.Options
	}{
		{"model defaults", withGen, GenerateOptions{Seed: &seed},
			sample.Options{Temperature: 0.6, TopK: 20, TopP: 0.95, Seed: 9}},
		{"request wins", withGen, GenerateOptions{Seed: &seed, Temperature: ptr(0.0), TopK: ptr(0), TopP: ptr(1.0), PresencePenalty: 0.5, LogitBias: map[int32]float32{3: -100}},
			sample.Options{Temperature: 0, TopK: 0, TopP: 1, PresencePenalty: 0.5, Seed: 9, LogitBias: map[int32]float32{3: -100}}},
		{"no generation config", &Engine{}, GenerateOptions{Seed: &seed, MinP: ptr(0.1), Logprobs: true, TopLogprobs: 3},
			sample.Options{Temperature: 1, TopP: 1, MinP: 0.1, Seed: 9, Logprobs: true, TopLogprobs: 3}},
	} {
		got, err := tc.e.sampleOptions(&tc.opt)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("%s: (-got +want)\n%s", tc.name, diff)
		}
	}
	if _, err := withGen.sampleOptions(&GenerateOptions{TopP: ptr(1.5)}); err == nil {
		t.Error("top_p 1.5: want an error")
	}
}

func ptr[T any](v T) *T { return &v }
