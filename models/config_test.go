package models

import (
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
)

func parse(t *testing.T, js string) *hf.Config {
	t.Helper()
	c, err := hf.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: unexpected error %v", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: err = %v, want one containing %q", what, err, want)
	}
}

func TestKeysCheck(t *testing.T) {
	k := Keys{Prefix: "text_config.", Read: []string{"hidden_size"},
		Fixed: map[string][]any{"attention_bias": {false}, "hidden_act": {"silu", "swish"}, "n": {1.0}}, Inert: []string{"x"}}
	for _, tc := range []struct{ js, want string }{
		{`{"hidden_size": 8, "attention_bias": false, "hidden_act": "swish", "n": 1.0, "x": 3, "unknown": {"a": 1}}`, ""},
		{`{"attention_bias": null, "hidden_act": null, "quantization_config": null}`, ""}, // null is the default
		{`{"n": 1}`, ""},
		{`{"attention_bias": true}`, "config.json: text_config.attention_bias is true: not supported (only false)"},
		{`{"hidden_act": "gelu"}`, `text_config.hidden_act is "gelu": not supported (only "silu" or "swish")`},
		{`{"n": 2, "attention_bias": true}`, "text_config.attention_bias is true"}, // sorted: the first key named
		{`{"quantization_config": {"quant_method": "fp8"}}`, "text_config.quantization_config is set: a pre-quantized checkpoint"},
		{`{"per_layer_config": {}}`, "text_config.per_layer_config is set"},
		{`[1]`, "config.json: text_config."},
	} {
		wantErr(t, tc.js, k.Check([]byte(tc.js)), tc.want)
	}
	got, err := k.Unclassified([]byte(`{"hidden_size": 1, "n": 1, "x": 1, "dtype": "bfloat16", "rope_theta": 1, "b": 1, "a": 1}`))
	if err != nil || strings.Join(got, ",") != "a,b" {
		t.Errorf("Unclassified = %v, %v; want [a b]", got, err)
	}
}

func TestCheckRope(t *testing.T) {
	for _, tc := range []struct {
		js    string
		spec  RopeSpec
		theta float64
		want  string
	}{
		{`{}`, RopeSpec{DefaultTheta: 10000}, 10000, ""},
		{`{"rope_theta": 1e6, "rope_scaling": null}`, RopeSpec{}, 1e6, ""},
		{`{"rope_parameters": {"rope_type": "default", "rope_theta": 5e6}}`, RopeSpec{}, 5e6, ""},
		{`{"rope_parameters": {"rope_type": "yarn", "factor": 4, "original_max_position_embeddings": 32768}}`, RopeSpec{},
			0, `config.json: rope_parameters.rope_type is "yarn": not supported yet`},
		{`{"rope_scaling": {"type": "linear", "factor": 2}}`, RopeSpec{}, 0, `rope_scaling.rope_type is "linear"`},
		{`{"rope_parameters": {"rope_type": "default", "factor": 2}}`, RopeSpec{}, 0, "rope_parameters.factor is set"},
		{`{"rope_parameters": {"rope_type": "default", "beta_fast": 32}}`, RopeSpec{}, 0, "rope_parameters.beta_fast is set"},
		{`{"rope_parameters": {"full_attention": {"rope_type": "default"}}}`, RopeSpec{}, 0, "rope_parameters.full_attention is set"},
		{`{"partial_rotary_factor": 0.25}`, RopeSpec{}, 0, "partial_rotary_factor is 0.25"},
		{`{"partial_rotary_factor": 0.25, "rope_theta": 1}`, RopeSpec{Partial: true}, 1, ""},
		{`{"rope_parameters": {"mrope_interleaved": true}}`, RopeSpec{Prefix: "text_config."}, 0,
			"text_config.rope_parameters.mrope_interleaved is set"},
		{`{"rope_parameters": {"mrope_section": [1, 1, 1], "rope_theta": 2}}`, RopeSpec{MRope: true}, 2, ""},
		{`{"rope_theta": 0}`, RopeSpec{DefaultTheta: 10000}, 0, "rope_theta must be > 0"},
	} {
		c := parse(t, tc.js)
		theta, err := CheckRope(&c.Rope, tc.spec)
		wantErr(t, tc.js, err, tc.want)
		if err == nil && theta != tc.theta {
			t.Errorf("%s: theta %v, want %v", tc.js, theta, tc.theta)
		}
	}
}

func TestCheckSlidingWindow(t *testing.T) {
	const base = `"num_hidden_layers": 4`
	for _, tc := range []struct {
		js       string
		perLayer bool
		want     string
	}{
		{`{` + base + `}`, true, ""},
		{`{` + base + `, "use_sliding_window": false, "sliding_window": 64}`, true, ""},
		{`{` + base + `, "use_sliding_window": true, "sliding_window": null}`, true, ""},
		// layers from max_window_layers on slide; 28 by default, beyond 4 layers
		{`{` + base + `, "use_sliding_window": true}`, true, ""},
		{`{` + base + `, "use_sliding_window": true, "max_window_layers": 2}`, true, "sliding_window 4096: sliding-window attention (layers [2 3])"},
		{`{` + base + `, "use_sliding_window": true, "max_window_layers": 0, "sliding_window": 8,
			"layer_types": ["full_attention", "sliding_attention", "full_attention", "full_attention"]}`, true, "(layers [1])"},
		{`{` + base + `, "layer_types": ["full_attention", "sliding_attention", "full_attention", "full_attention"]}`, true, ""},
		{`{` + base + `, "layer_types": ["full_attention"]}`, true, "layer_types has 1 entries for 4 layers"},
		{`{` + base + `, "layer_types": ["full_attention", "chunked_attention", "full_attention", "full_attention"]}`, true, `layer_types[1] is "chunked_attention"`},
		{`{` + base + `, "layer_types": ["x"]}`, false, ""}, // not read by Qwen3-MoE
		{`{` + base + `, "use_sliding_window": true}`, false, "(layers [0 1 2 3])"},
	} {
		wantErr(t, tc.js, CheckSlidingWindow(parse(t, tc.js), tc.perLayer), tc.want)
	}
}

func TestIntKey(t *testing.T) {
	c := parse(t, `{"a": 3, "b": null, "c": 2.0, "d": 2.5, "e": "x"}`)
	for _, tc := range []struct {
		key  string
		want int
		err  string
	}{{"a", 3, ""}, {"b", -2, ""}, {"c", 2, ""}, {"absent", -1, ""}, {"d", 0, "d: want an integer, got 2.5"}, {"e", 0, "want an integer"}} {
		n, err := IntKey(c, tc.key, -1, -2)
		wantErr(t, tc.key, err, tc.err)
		if err == nil && n != tc.want {
			t.Errorf("IntKey(%q) = %d, want %d", tc.key, n, tc.want)
		}
	}
}
