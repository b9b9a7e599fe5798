package qwen3vl

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/models/internal/configtest"
)

// TestShippedConfig builds and binds the tiny checkpoint as shipped, reads
// the context limit from text_config, and checks that the key tables
// classify every key of the tiny and the 2B config.
func TestShippedConfig(t *testing.T) {
	m := configtest.Builds(t, tinyDir).(*Model)
	if c := m.Config(); c.Text.MaxPositions != 1024 || !slices.Equal(c.Vision.DeepStackTaps(), []int{0, 2, 3}) {
		t.Errorf("config %+v", c)
	}
	raw, err := os.ReadFile(tinyDir + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, js := range [][]byte{raw, []byte(qwen3VL2B)} {
		var top struct{ Text, Vision json.RawMessage }
		if err := json.Unmarshal(js, &struct {
			Text   *json.RawMessage `json:"text_config"`
			Vision *json.RawMessage `json:"vision_config"`
		}{&top.Text, &top.Vision}); err != nil {
			t.Fatal(err)
		}
		configtest.Classified(t, &Keys, js)
		configtest.Classified(t, &TextClass.Keys, top.Text)
		configtest.Classified(t, &VisionKeys, top.Vision)
	}
	cfg, err := hf.ParseConfig([]byte(qwen3VL2B))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Text.MaxPositions != 262144 || c.Text.RopeTheta != 5e6 {
		t.Errorf("2B text config %+v", c.Text)
	}
}

// TestDefaults: absent keys take the Qwen3-VL config classes' defaults.
func TestDefaults(t *testing.T) {
	del := func(k string) configtest.Edit { return configtest.Edit{Path: k, Value: configtest.Delete} }
	c, err := ParseConfig(configtest.Load(t, tinyDir, del("text_config.max_position_embeddings"),
		del("text_config.rope_parameters.rope_theta"), del("text_config.rope_parameters.mrope_interleaved"),
		del("text_config.tie_word_embeddings"), del("vision_config.in_channels"), del("vision_config.rope_parameters")))
	if err != nil {
		t.Fatal(err)
	}
	if c.Text.MaxPositions != 128000 || c.Text.RopeTheta != 500000 || !c.Text.Tied || c.Vision.InChannels != 3 || c.Vision.RopeTheta != 10000 {
		t.Errorf("defaults: %+v", c)
	}
	// head_dim 128 and mrope_section [24, 20, 20] when absent; 32 key/value
	// heads when absent, as many as the query heads when null.
	c, err = ParseConfig(configtest.Load(t, tinyDir, del("text_config.head_dim"), del("text_config.rope_parameters.mrope_section"),
		configtest.Edit{Path: "text_config.num_key_value_heads", Value: nil}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Text.HeadDim != 128 || !slices.Equal(c.Text.MRopeSection, []int64{24, 20, 20}) || c.Text.KVHeads != c.Text.Heads {
		t.Errorf("defaults: %+v", c.Text)
	}
	c, err = ParseConfig(configtest.Load(t, tinyDir, del("vision_config.deepstack_visual_indexes"), del("text_config.num_key_value_heads"),
		configtest.Edit{Path: "text_config.num_attention_heads", Value: 32}, configtest.Edit{Path: "text_config.num_hidden_layers", Value: 3},
		configtest.Edit{Path: "vision_config.depth", Value: 25}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Vision.DeepStack, []int{8, 16, 24}) || c.Text.KVHeads != 32 {
		t.Errorf("defaults: %+v", c)
	}
}

// TestUnsupportedFields sets, one at a time, a field that changes the
// math to a value the builder does not implement; the build error names it.
func TestUnsupportedFields(t *testing.T) {
	configtest.Unsupported(t, tinyDir, []configtest.Case{
		configtest.Set("text_config.attention_bias", true, "true"),
		configtest.Set("text_config.hidden_act", "gelu", `"gelu"`),
		configtest.Set("text_config.use_sliding_window", true, "true"),
		configtest.Set("text_config.rope_parameters.rope_type", "yarn", `"yarn"`),
		configtest.Set("text_config.rope_parameters.factor", 2, "scaling"),
		configtest.Set("text_config.rope_parameters.mrope_interleaved", false, "interleaved layout"),
		configtest.Set("text_config.rope_parameters.mrope_section", []any{4, 3, 1}, "3·h and 3·w"),
		configtest.Set("text_config.partial_rotary_factor", 0.5, "0.5"),
		configtest.Set("text_config.tie_word_embeddings", false, "top-level"),
		// v4 spelling: rope_scaling in text_config, YaRN refused by name.
		{Edits: []configtest.Edit{{Path: "text_config.rope_scaling", Value: map[string]any{"rope_type": "yarn", "factor": 4.0,
			"mrope_section": []any{4, 2, 2}}}, {Path: "text_config.rope_parameters", Value: configtest.Delete}}, Want: `"yarn"`},
		configtest.Set("vision_config.hidden_act", "gelu", `"gelu"`),
		configtest.Set("vision_config.rope_parameters.rope_type", "yarn", `"yarn"`),
		configtest.Set("vision_config.deepstack_visual_indexes", []any{0, 2, 0}, "block 0 twice"),
		configtest.Set("quantization_config", map[string]any{"quant_method": "fp8"}, "quantized"),
		configtest.Set("text_config.quantization_config", map[string]any{"quant_method": "fp8"}, "quantized"),
	})
}

// TestDeepStackOrder: transformers' vision tower collects DeepStack
// features in block order (it appends one as it walks its blocks, with
// deepstack_merger_list[deepstack_visual_indexes.index(block)]) and the
// text model adds feature j after layer j, so the order of
// deepstack_visual_indexes only says which merger serves which block.
// The tiny model with the list [3, 0, 2] and its mergers renumbered to
// match (merger k holds what the shipped [0, 2, 3] checkpoint has for the
// block the new list names at k) therefore computes exactly what the
// shipped model does: the vision graphs print the same once the merger
// names are mapped back. (deepstack_test.go runs both.)
func TestDeepStackOrder(t *testing.T) {
	sorted, unsorted := []int{0, 2, 3}, []int{3, 0, 2}
	build := func(list []int) string {
		m, err := New(configtest.Load(t, tinyDir, configtest.Edit{Path: "vision_config.deepstack_visual_indexes", Value: list}))
		if err != nil {
			t.Fatal(err)
		}
		g, err := m.(*Model).BuildVision(models.BuildOptions{WeightDType: ir.BF16})
		if err != nil {
			t.Fatal(err)
		}
		return ir.Print(g)
	}
	want := build(sorted)
	var back []string // unsorted's merger k is sorted's merger slices.Index(sorted, unsorted[k])
	for k, b := range unsorted {
		back = append(back, "deepstack_merger_list."+strconv.Itoa(k)+".", "deepstack_merger_list."+strconv.Itoa(slices.Index(sorted, b))+".")
	}
	got := strings.NewReplacer(back...).Replace(build(unsorted))
	if got != want {
		t.Errorf("vision graph of %v (mergers renumbered) differs from that of %v:\n%s\nwant\n%s", unsorted, sorted, got, want)
	}
	if strings.Count(want, "deepstack_merger_list.") == 0 {
		t.Fatal("no DeepStack mergers in the graph")
	}
}
