package models

import "testing"

// TestClassCheck: the sizes, eps, RoPE and GQA geometry every builder
// needs, with the class's defaults, and an error naming the key (under
// the class's prefix) otherwise.
func TestClassCheck(t *testing.T) {
	const base = `"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 32`
	qwen3 := Class{Rope: RopeSpec{DefaultTheta: 1e4}, MaxPositions: 512, Eps: 1e-6,
		GQA: &GQA{KVHeads: 4, NullKVHeadsIsHeads: true, HeadDim: 128}}
	moe := Class{GQA: &GQA{KVHeads: 2}, Eps: 1e-6, MaxPositions: 512}
	next := Class{Rope: RopeSpec{Partial: true, DefaultPartial: 0.25}, Eps: 1e-6, MaxPositions: 512, GQA: &GQA{KVHeads: 2, HeadDim: 16}}
	text := Class{Keys: Keys{Prefix: "text_config."}, Rope: RopeSpec{Prefix: "text_config."}, Eps: 1e-6, MaxPositions: 512,
		GQA: &GQA{KVHeads: 4, HeadDim: 16}}
	mla := Class{Eps: 1e-5, MaxPositions: 512}
	for _, tc := range []struct {
		name  string
		class Class
		js    string
		want  TextConfig // KVHeads, HeadDim, RotaryDims, Eps, RopeTheta, MaxPositions compared
		err   string
	}{
		{"qwen3 defaults", qwen3, `{` + base + `}`, TextConfig{KVHeads: 4, HeadDim: 128, RotaryDims: 128, Eps: 1e-6, RopeTheta: 1e4, MaxPositions: 512}, ""},
		{"qwen3 null kv", qwen3, `{` + base + `, "num_key_value_heads": null, "head_dim": 8}`, TextConfig{KVHeads: 4, HeadDim: 8, RotaryDims: 8, Eps: 1e-6, RopeTheta: 1e4, MaxPositions: 512}, ""},
		{"moe head_dim from hidden", moe, `{` + base + `}`, TextConfig{KVHeads: 2, HeadDim: 16, RotaryDims: 16, Eps: 1e-6, MaxPositions: 512}, ""},
		{"moe null kv", moe, `{` + base + `, "num_key_value_heads": null}`, TextConfig{}, "num_key_value_heads must be > 0"},
		{"next partial default", next, `{` + base + `}`, TextConfig{KVHeads: 2, HeadDim: 16, RotaryDims: 4, Eps: 1e-6, MaxPositions: 512}, ""},
		{"next partial given", next, `{` + base + `, "partial_rotary_factor": 0.5}`, TextConfig{KVHeads: 2, HeadDim: 16, RotaryDims: 8, Eps: 1e-6, MaxPositions: 512}, ""},
		{"next odd rotary", next, `{` + base + `, "partial_rotary_factor": 0.3125}`, TextConfig{}, "rotary dims 5"},
		{"mla", mla, `{` + base + `, "num_key_value_heads": 3}`, TextConfig{Eps: 1e-5, MaxPositions: 512}, ""},
		{"gqa ratio", moe, `{` + base + `, "num_key_value_heads": 3}`, TextConfig{}, "num_attention_heads 4 is not a multiple of num_key_value_heads 3"},
		{"odd head_dim", moe, `{` + base + `, "head_dim": 7}`, TextConfig{}, "head_dim 7 must be even"},
		{"eps", qwen3, `{` + base + `, "rms_norm_eps": 0}`, TextConfig{}, "config.json: rms_norm_eps must be > 0"},
		{"size", qwen3, `{` + base + `, "vocab_size": 0}`, TextConfig{}, "config.json: vocab_size must be > 0, got 0"},
		{"prefix", text, `{` + base + `, "num_key_value_heads": null}`, TextConfig{}, "config.json: text_config.num_key_value_heads must be > 0"},
		{"prefix size", text, `{` + base + `, "hidden_size": 0}`, TextConfig{}, "config.json: text_config.hidden_size must be > 0"},
		{"prefix eps", text, `{` + base + `, "rms_norm_eps": 0}`, TextConfig{}, "config.json: text_config.rms_norm_eps must be > 0"},
	} {
		got, err := tc.class.Check(parse(t, tc.js))
		wantErr(t, tc.name, err, tc.err)
		if err != nil || tc.err != "" {
			continue
		}
		if got.KVHeads != tc.want.KVHeads || got.HeadDim != tc.want.HeadDim || got.RotaryDims != tc.want.RotaryDims ||
			got.Eps != tc.want.Eps || got.RopeTheta != tc.want.RopeTheta || got.MaxPositions != tc.want.MaxPositions ||
			got.Hidden != 64 || got.Layers != 2 || got.Heads != 4 || got.Vocab != 32 {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
