package cuda_test

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	_ "github.com/inference-pio/pio/models/all"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/engine"
)

// vlPlans builds the tiny Qwen3-VL with pioc's driver and returns its vision
// stage and text plans, f32 and bf16 weights.
func vlPlans(t *testing.T) map[string]*ir.Plan {
	t.Helper()
	ps := map[string]*ir.Plan{}
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		path := filepath.Join(t.TempDir(), "vl.pio")
		if _, err := compiler.Build(compiler.Options{Source: "../../testdata/tiny/qwen3vl", Output: path, DType: dt}); err != nil {
			t.Fatal(err)
		}
		e, err := engine.Open(path, engine.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Meta.Stages) != 1 {
			t.Fatalf("%d stages, want the vision stage", len(e.Meta.Stages))
		}
		ps["vision/"+dt.String()] = e.Meta.Stages[0].Plan
		ps["text/"+dt.String()] = e.Meta.Plan
		e.Close()
	}
	return ps
}

// qwen3VL2B is Qwen/Qwen3-VL-2B-Instruct's config with 3 vision blocks and
// 3 text layers: the kernels depend on the shapes (vision head dim 64,
// interleaved MRoPE [24,20,20] over head dim 128), not on the depth.
const qwen3VL2B = `{"architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl", "image_token_id": 151655,
  "video_token_id": 151656, "vision_start_token_id": 151652, "vision_end_token_id": 151653, "tie_word_embeddings": true,
  "text_config": {"head_dim": 128, "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 6144, "max_position_embeddings": 262144,
    "model_type": "qwen3_vl_text", "num_attention_heads": 16, "num_hidden_layers": 3, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
    "rope_parameters": {"mrope_interleaved": true, "mrope_section": [24, 20, 20], "rope_theta": 5000000.0, "rope_type": "default"},
    "tie_word_embeddings": true, "vocab_size": 151936},
  "vision_config": {"deepstack_visual_indexes": [0, 1, 2], "depth": 3, "hidden_act": "gelu_pytorch_tanh", "hidden_size": 1024,
    "in_channels": 3, "intermediate_size": 4096, "model_type": "qwen3_vl_vision", "num_heads": 16, "num_position_embeddings": 2304,
    "out_hidden_size": 2048, "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2}}`

// realVLPlans are the vision and text plans of qwen3VL2B (bf16 weights, no
// checkpoint: every weight is taken to exist).
func realVLPlans(t *testing.T) map[string]*ir.Plan {
	t.Helper()
	cfg, err := hf.ParseConfig([]byte(qwen3VL2B))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := m.(models.Staged)
	if !ok {
		t.Fatal("qwen3-vl is not a staged model")
	}
	gs, err := st.Stages(models.BuildOptions{WeightDType: ir.BF16, Has: func(n string) bool { return n != "lm_head.weight" }})
	if err != nil {
		t.Fatal(err)
	}
	ps := map[string]*ir.Plan{}
	for i, g := range gs {
		if err := passes.Run(g, passes.Options{}); err != nil {
			t.Fatal(err)
		}
		p, err := passes.Lower(g)
		if err != nil {
			t.Fatal(err)
		}
		ps["qwen3-vl-2b/"+st.StageNames()[i]] = p
	}
	return ps
}

// TestGenerateVisionPlans: every step of both Qwen3-VL plans gets a launch,
// and each vision-family op its own kernel.
func TestGenerateVisionPlans(t *testing.T) {
	want := map[string][]string{
		"vision": {"layer_norm_", "gelu_", "bias_add_", "segment_attention_", "mrope_", "weighted_rows_"},
		"text":   {"mrope_", "add_rows_", "set_rows_"},
	}
	plans := vlPlans(t)
	maps.Copy(plans, realVLPlans(t))
	for name, p := range plans {
		m, err := cuda.Generate(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		launched := make([]bool, len(p.Steps))
		for _, l := range m.Launches {
			launched[l.Step] = true
			if !slices.Contains(m.Kernels, l.Kernel) {
				t.Errorf("%s: step %d launches unknown kernel %s", name, l.Step, l.Kernel)
			}
		}
		if i := slices.Index(launched, false); i >= 0 {
			t.Errorf("%s: step %d (%v) has no launch", name, i, p.Steps[i].Op)
		}
		stage := name[strings.LastIndex(name, "/")+1:]
		if strings.HasPrefix(name, "vision/") || strings.HasPrefix(name, "text/") {
			stage = strings.Split(name, "/")[0]
		}
		for _, prefix := range want[stage] {
			if !slices.ContainsFunc(m.Kernels, func(k string) bool { return strings.HasPrefix(k, prefix) }) {
				t.Errorf("%s: no %s kernel among %v", name, prefix, m.Kernels)
			}
		}
	}
}

// TestCompileVisionPlans compiles every kernel of both tiny Qwen3-VL plans
// (f32 and bf16 weights) for every target arch with the real nvcc,
// warnings as errors. It skips without nvcc.
func TestCompileVisionPlans(t *testing.T) {
	nvcc := cuda.NVCCOrSkip(t)
	src := cuda.NewKernelSource()
	plans := vlPlans(t)
	maps.Copy(plans, realVLPlans(t))
	for _, p := range plans {
		m, err := cuda.Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		src.Add(m, nil, nil)
	}
	cuda.CompileEveryArch(t, nvcc, src.String(), src.Names)
	t.Logf("%d kernels compiled for %v", len(src.Names), cuda.DefaultArchs)
}
