package glm4moelite_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// The real GLM-4.7-Flash config (hub spelling) builds and lowers with no
// weights; its latent cache holds 576 values per token and layer.
const realConfig = `{"architectures":["Glm4MoeLiteForCausalLM"],"model_type":"glm4_moe_lite","hidden_size":2048,
	"intermediate_size":10240,"moe_intermediate_size":1536,"num_hidden_layers":47,"num_attention_heads":20,
	"num_key_value_heads":20,"n_shared_experts":1,"n_routed_experts":64,"routed_scaling_factor":1.8,
	"kv_lora_rank":512,"q_lora_rank":768,"qk_rope_head_dim":64,"v_head_dim":256,"qk_nope_head_dim":192,
	"n_group":1,"topk_group":1,"num_experts_per_tok":4,"first_k_dense_replace":1,"norm_topk_prob":true,
	"topk_method":"noaux_tc","rope_theta":1000000,"rope_scaling":null,"rms_norm_eps":1e-5,"vocab_size":154880,
	"tie_word_embeddings":false,"num_nextn_predict_layers":1,"max_position_embeddings":202752,"torch_dtype":"bfloat16"}`

func TestRealConfigBuildsAndLowers(t *testing.T) {
	cfg, err := hf.ParseConfig([]byte(realConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(models.BuildOptions{WeightDType: ir.BF16})
	if err != nil {
		t.Fatal(err)
	}
	if err := passes.Run(g, passes.Options{Check: true}); err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Caches) != 47 {
		t.Fatalf("caches: got %d, want 47", len(p.Caches))
	}
	for _, c := range p.Caches {
		if c.Kind != ir.CacheLatent || !c.Entries[0].Equal(ir.Sh(512)) || !c.Entries[1].Equal(ir.Sh(64)) {
			t.Fatalf("cache %v %v, want latent [512] + [64]", c.Kind, c.Entries)
		}
	}
	names := map[string]bool{}
	for _, w := range p.Weights {
		names[w.Name] = true
	}
	for _, want := range []string{"model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.experts.gate_up_proj",
		"model.layers.46.mlp.shared_experts.down_proj.weight", "model.layers.46.mlp.gate.e_score_correction_bias"} {
		if !names[want] {
			t.Errorf("plan lacks %s", want)
		}
	}
	if names["model.layers.0.mlp.experts.gate_up_proj"] || names["model.layers.1.mlp.down_proj.weight"] {
		t.Errorf("layer 0 must be dense and layer 1 sparse")
	}
	// Cache bytes per token, bf16 entries, all 47 layers: latent against expanded K/V.
	type cacher interface{ CacheBytesPerToken(int) (int64, int64) }
	lat, exp := m.(cacher).CacheBytesPerToken(2)
	if lat != 47*576*2 || exp != 47*20*(256+256)*2 {
		t.Errorf("cache bytes per token: latent %d, expanded %d", lat, exp)
	}
	t.Logf("cache per token (bf16, 47 layers): latent %d B, expanded K/V %d B (%.1f×)", lat, exp, float64(exp)/float64(lat))
}

// The MTP layer stored after the decoder layers is skipped, nothing else.
func TestIgnored(t *testing.T) {
	cfg, err := hf.ParseConfig([]byte(realConfig))
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"model.layers.47.eh_proj.weight": true, "model.layers.47.mlp.experts.3.up_proj.weight": true,
		"model.layers.46.eh_proj.weight": false, "model.layers.4.mlp.gate.weight": false, "model.norm.weight": false,
		"model.layers.x.foo": false, "lm_head.weight": false,
	} {
		if got := m.Ignored(name); got != want {
			t.Errorf("Ignored(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ patch, want string }{
		{`"n_group":2`, "grouped routing"},
		{`"kv_lora_rank":0`, "kv_lora_rank must be > 0"},
		{`"mlp_layer_types":["dense"]`, "2 layers"},
		{`"topk_method":"greedy"`, "not supported"},
		{`"num_experts_per_tok":9`, "do not make a MoE"},
	} {
		js := `{"architectures":["Glm4MoeLiteForCausalLM"],"hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,
			"num_attention_heads":4,"vocab_size":32,"rope_theta":10000,"rms_norm_eps":1e-5,"kv_lora_rank":16,"q_lora_rank":8,
			"qk_nope_head_dim":8,"qk_rope_head_dim":4,"v_head_dim":8,"n_routed_experts":8,"num_experts_per_tok":2,
			"moe_intermediate_size":16,` + tc.patch + `}`
		cfg, err := hf.ParseConfig([]byte(js))
		if err == nil {
			_, err = models.New(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.patch, err, tc.want)
		}
	}
}

func build(t *testing.T, dir string, dt ir.DType) *cpu.Backend { return buildTaps(t, dir, dt, true) }

// buildTaps compiles a checkpoint; without taps the router values have no
// outside readers, so the fusion passes (fuse-moe-routing) apply.
func buildTaps(t *testing.T, dir string, dt ir.DType, taps bool) *cpu.Backend {
	_, be := modeltest.Build(t, dir, dt, taps, geometry)
	return be
}

// geometry is the CPU backend's shape in these tests: block size 4, so
// decode crosses blocks.
var geometry = cpu.Options{MaxTokens: 64, BlockSize: 4, NumBlocks: 64, MaxSeqs: 4}

func fullForward(t *testing.T, be *cpu.Backend, ids []int32) { modeltest.Forward(t, be, geometry, ids) }

func output(t *testing.T, be *cpu.Backend, name string) []float32 {
	return modeltest.Output(t, be, name)
}

func checkRoutes(t *testing.T, be *cpu.Backend, dir string, p, layers int) int {
	return modeltest.CheckRoutes(t, be, dir, p, layers)
}

// Tolerance: the checkpoint is bf16, so bf16 and f32 engines both hold the
// reference weights exactly; f32 compute differs from transformers' in
// summation order and in the absorbed MLA form (W_UK folded into the query,
// W_UV applied after attention), both rounding-level: 1e-4 of the tensor scale.
const tol = 1e-4

// The checkpoint carries a tiny MTP layer (model.layers.3.*): building
// from it at all proves the layer is skipped without error.
func TestGolden(t *testing.T) {
	g, err := golden.Load("glm4moelite")
	if err != nil {
		t.Fatal(err)
	}
	dir := g.Dir
	for _, dt := range []ir.DType{ir.F32, ir.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			be := build(t, dir, dt)
			compared := 0
			for pi, p := range g.Prompts {
				modeltest.CheckGolden(t, be, geometry, pi, p, tol)
				compared += checkRoutes(t, be, g.Dir, pi, len(p.Hidden))
			}
			if compared < 40 {
				t.Errorf("only %d router choices compared", compared)
			}
			modeltest.CheckGreedy(t, be, geometry, g.Prompts)
		})
	}
}

// The engine as pioc builds it by default (no taps, fusions applied) gives
// the reference logits and greedy continuation too.
func TestGoldenFused(t *testing.T) {
	g, err := golden.Load("glm4moelite")
	if err != nil {
		t.Fatal(err)
	}
	be := buildTaps(t, g.Dir, ir.BF16, false)
	gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
	for pi, p := range g.Prompts {
		fullForward(t, be, p.IDs)
		if e := golden.RelErr(output(t, be, "logits"), p.Logits); !tolerance.Within(t, e, tol) {
			t.Errorf("prompt %d logits: relative error %.3g > %.3g", pi, e, tol)
		}
		got, err := gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: len(p.Greedy)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, p.Greedy) {
			t.Errorf("prompt %d greedy:\n got %v\nwant %v", pi, got, p.Greedy)
		}
	}
}

// Decoding token by token through the paged cache gives the logits of one
// full forward, row by row.
func TestIncrementalDecodeEqualsFullForward(t *testing.T) {
	g, err := golden.Load("glm4moelite")
	if err != nil {
		t.Fatal(err)
	}
	be := build(t, g.Dir, ir.F32)
	p := g.Prompts[len(g.Prompts)-1]
	fullForward(t, be, p.IDs)
	full := slices.Clone(output(t, be, "logits"))
	vocab := len(full) / len(p.IDs)
	gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
	var s modeltest.Sequence
	defer gen.Release(&s)
	logits, err := gen.Feed(&s, p.IDs[:5])
	if err != nil {
		t.Fatal(err)
	}
	if e := golden.RelErr(logits, full[4*vocab:5*vocab]); !tolerance.Within(t, e, 1e-5) {
		t.Errorf("after the 5-token chunk: relative error %.3g", e)
	}
	for i := 5; i < len(p.IDs); i++ {
		logits, err := gen.Feed(&s, p.IDs[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if e := golden.RelErr(logits, full[i*vocab:(i+1)*vocab]); !tolerance.Within(t, e, 1e-5) {
			t.Errorf("decode step at position %d: relative error %.3g", i, e)
		}
	}
}

// `pioc build glm-4.7-flash` finds the model in a Hugging Face cache (the tiny
// checkpoint stands in for the real one) and builds an engine from it.
func TestBuildFromHFCache(t *testing.T) {
	g, err := golden.Load("glm4moelite")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	repo := filepath.Join(cache, "models--zai-org--GLM-4.7-Flash")
	snap := filepath.Join(repo, "snapshots", "0123abcd")
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors"} {
		if err := os.Symlink(filepath.Join(g.Dir, f), filepath.Join(snap, f)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(repo, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte("0123abcd"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HF_HUB_CACHE", cache)
	out := filepath.Join(t.TempDir(), "e.pio")
	res, err := compiler.Build(compiler.Options{Source: "glm-4.7-flash", Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint != snap {
		t.Errorf("built from %s, want %s", res.Checkpoint, snap)
	}
	e, err := engine.Open(out, engine.OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	be, err := cpu.FromEngine(e, cpu.Options{MaxTokens: 32, BlockSize: 4, NumBlocks: 16, MaxSeqs: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	p := g.Prompts[1]
	got, err := modeltest.NewGenerator(be, kvcache.NewAllocator(16, 4), 32).Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: len(p.Greedy)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, p.Greedy) {
		t.Errorf("greedy:\n got %v\nwant %v", got, p.Greedy)
	}
}
