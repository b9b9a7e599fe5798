package qwen3vl

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/passes"
)

const tinyDir = "../../testdata/tiny/qwen3vl"

func tiny(t *testing.T) (*hf.Checkpoint, *Model) {
	t.Helper()
	ck, err := hf.OpenCheckpoint(tinyDir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	m, err := models.New(ck.Config)
	if err != nil {
		t.Fatal(err)
	}
	return ck, m.(*Model)
}

func TestConfig(t *testing.T) {
	_, m := tiny(t)
	c := m.Config()
	if c.ImageToken != 250 || c.VisionStart != 248 || c.VisionEnd != 249 || !c.Text.Tied ||
		!slices.Equal(c.Text.MRopeSection, []int64{4, 2, 2}) || c.Text.RopeTheta != 5e6 ||
		c.Vision.Depth != 4 || !slices.Equal(c.Vision.DeepStack, []int{0, 2, 3}) || c.Vision.RopeTheta != 10000 ||
		c.Vision.NumPositionEmbeddings != 16 || c.Vision.OutHidden != 64 {
		t.Errorf("config %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	ck, _ := tiny(t)
	for _, c := range []struct {
		edit func(top, text, vision map[string]any)
		want string
	}{
		{func(_, text, _ map[string]any) {
			text["rope_parameters"].(map[string]any)["mrope_section"] = []int{4, 2, 1}
		}, "summing to head_dim/2"},
		{func(_, _, v map[string]any) { v["num_position_embeddings"] = 15 }, "not a square"},
		{func(_, _, v map[string]any) { v["out_hidden_size"] = 32 }, "!= text_config.hidden_size"},
		{func(_, _, v map[string]any) { v["deepstack_visual_indexes"] = []int{0, 2, 9} }, "outside depth"},
		{func(_, _, v map[string]any) { v["hidden_act"] = "relu" }, "hidden_act"},
		{func(top, _, _ map[string]any) { delete(top, "image_token_id") }, "image_token_id"},
		{func(top, _, _ map[string]any) { delete(top, "text_config") }, "text_config"},
	} {
		var top map[string]any
		if err := json.Unmarshal(ck.Config.Raw, &top); err != nil {
			t.Fatal(err)
		}
		c.edit(top, top["text_config"].(map[string]any), top["vision_config"].(map[string]any))
		raw, _ := json.Marshal(top)
		cfg, err := hf.ParseConfig(raw)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want an error containing %q", err, c.want)
		}
	}
}

// TestStagesBuildAndBind builds both stages with and without a checkpoint,
// lowers them, and checks that together they declare every checkpoint
// tensor exactly once with its shape (the patch embedding as its 2-D view).
func TestStagesBuildAndBind(t *testing.T) {
	ck, m := tiny(t)
	if _, err := m.Build(models.BuildOptions{}); !errors.Is(err, ErrNeedsStages) {
		t.Errorf("Build: %v", err)
	}
	has := func(n string) bool { _, ok := ck.Tensor(n); return ok }
	declared := map[string]ir.Shape{}
	for _, build := range []func(models.BuildOptions) (*ir.Graph, error){m.BuildVision, m.BuildText} {
		for _, opt := range []models.BuildOptions{{}, {WeightDType: ir.BF16, Has: has, Taps: true}} {
			g, err := build(opt)
			if err != nil {
				t.Fatal(err)
			}
			if err := ir.Verify(g); err != nil {
				t.Fatal(err)
			}
			if _, err := passes.Lower(g); err != nil {
				t.Fatal(err)
			}
			for _, v := range g.Values {
				if v.Op == ir.OpWeight {
					declared[v.Name()] = v.Shape
				}
			}
		}
	}
	for _, name := range ck.Names() {
		x, _ := ck.Tensor(name)
		s, ok := declared[name]
		if !ok {
			t.Errorf("checkpoint tensor %s is not used", name)
			continue
		}
		n, _ := s.Elems(0, 0)
		if x.NumElements() != n || (len(x.Shape) == len(s) && !shapeIs(x.Shape, s)) {
			t.Errorf("%s: checkpoint %v, declared %v", name, x.Shape, s)
		}
		delete(declared, name)
	}
	for name := range declared {
		t.Errorf("declared weight %s is not in the checkpoint", name)
	}
}

func shapeIs(a []int64, s ir.Shape) bool {
	for i := range a {
		if a[i] != int64(s[i]) {
			return false
		}
	}
	return true
}

func TestBindStages(t *testing.T) {
	ck, m := tiny(t)
	gs, err := m.Stages(models.BuildOptions{WeightDType: ir.BF16, Has: func(n string) bool { _, ok := ck.Tensor(n); return ok }})
	if err != nil {
		t.Fatal(err)
	}
	if len(gs) != len(StageNames) {
		t.Fatalf("%d stages", len(gs))
	}
	if err := BindStages(gs, models.CheckpointSource(ck), nil); err != nil {
		t.Fatal(err)
	}
	// Each stage alone leaves the other's tensors unused.
	if err := models.Bind(gs[1], models.CheckpointSource(ck), nil); err == nil || !strings.Contains(err.Error(), "model.visual.") {
		t.Errorf("text stage alone: %v", err)
	}
	// A missing tensor is still reported.
	if err := BindStages(gs, hiding{models.CheckpointSource(ck), "model.visual.merger.norm.bias"}, nil); err == nil || !strings.Contains(err.Error(), "merger.norm.bias") {
		t.Errorf("missing tensor: %v", err)
	}
	if err := BindStages(gs[:1], models.CheckpointSource(ck), nil); err == nil || !strings.Contains(err.Error(), "language_model") {
		t.Errorf("vision stage alone: %v", err)
	}
}

type hiding struct {
	models.Source
	name string
}

func (h hiding) Info(name string) (models.TensorInfo, bool) {
	if name == h.name {
		return models.TensorInfo{}, false
	}
	return h.Source.Info(name)
}

// qwen3VL2B is Qwen3-VL-2B-Instruct's config.json as transformers 4.57
// writes it (v4 spellings: rope_scaling, rope_theta), per MODELS.md §6.1.
const qwen3VL2B = `{
  "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
  "image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653,
  "tie_word_embeddings": true,
  "text_config": {
    "model_type": "qwen3_vl_text", "hidden_size": 2048, "num_hidden_layers": 28, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 6144, "vocab_size": 151936,
    "max_position_embeddings": 262144, "rope_theta": 5000000, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
    "rope_scaling": {"rope_type": "default", "mrope_interleaved": true, "mrope_section": [24, 20, 20]},
    "attention_bias": false, "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151645, "dtype": "bfloat16"
  },
  "vision_config": {
    "model_type": "qwen3_vl", "depth": 24, "hidden_size": 1024, "intermediate_size": 4096, "num_heads": 16,
    "hidden_act": "gelu_pytorch_tanh", "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2,
    "in_channels": 3, "num_position_embeddings": 2304, "out_hidden_size": 2048, "deepstack_visual_indexes": [5, 11, 17]
  }
}`

// TestQwen3VL2BConfig builds and lowers both stages of the real model's
// geometry with zero weights and checks the weight count and parameter
// total against MODELS.md §6.2 (2 127 532 032, no lm_head).
func TestQwen3VL2BConfig(t *testing.T) {
	cfg, err := hf.ParseConfig([]byte(qwen3VL2B))
	if err != nil {
		t.Fatal(err)
	}
	mm, err := models.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := mm.(*Model)
	c := m.Config()
	if !slices.Equal(c.Text.MRopeSection, []int64{24, 20, 20}) || c.Text.RopeTheta != 5e6 || c.Vision.RopeTheta != 10000 || !c.Text.Tied {
		t.Errorf("config %+v", c)
	}
	gs, err := m.Stages(models.BuildOptions{WeightDType: ir.BF16})
	if err != nil {
		t.Fatal(err)
	}
	var params int64
	names := map[string]bool{}
	for _, g := range gs {
		p, err := passes.Lower(g)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d steps, arena %d B/token + %d B", g.Name, len(p.Steps), p.ArenaPerT, p.ArenaFixed)
		for _, v := range g.Values {
			if v.Op == ir.OpWeight && !names[v.Name()] {
				names[v.Name()] = true
				n, _ := v.Shape.Elems(0, 0)
				params += n
			}
		}
	}
	if params != 2127532032 {
		t.Errorf("%d parameters, MODELS.md says 2127532032", params)
	}
	if names["lm_head.weight"] {
		t.Error("declares lm_head.weight; the 2B checkpoint ties it")
	}
}
