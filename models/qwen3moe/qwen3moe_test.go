package qwen3moe_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// The real Qwen3-Coder-30B-A3B config (hub spelling) builds and lowers with
// no weights: per-expert tensors fold into one stacked weight per layer.
const realConfig = `{"architectures":["Qwen3MoeForCausalLM"],"model_type":"qwen3_moe","hidden_size":2048,
	"intermediate_size":5472,"num_hidden_layers":48,"num_attention_heads":32,"num_key_value_heads":4,"head_dim":128,
	"num_experts":128,"num_experts_per_tok":8,"moe_intermediate_size":768,"norm_topk_prob":true,
	"decoder_sparse_step":1,"mlp_only_layers":[],"vocab_size":151936,"max_position_embeddings":262144,
	"rope_theta":10000000,"rope_scaling":null,"rms_norm_eps":1e-6,"tie_word_embeddings":false,
	"torch_dtype":"bfloat16","eos_token_id":151645,"use_sliding_window":false,"attention_bias":false}`

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
	// Each layer's experts are one stacked gate_up and one stacked down
	// weight; no per-expert tensor reaches the plan.
	stacked := 0
	for _, w := range p.Weights {
		if strings.Contains(w.Name, ".experts.") && !strings.HasSuffix(w.Name, "_proj") {
			t.Errorf("per-expert weight %q in the plan", w.Name)
		}
		if strings.HasSuffix(w.Name, ".mlp.experts.gate_up_proj") {
			stacked++
			if !w.Shape.Equal(ir.Sh(128*2*768, 2048)) || w.Recipe == nil || len(w.Recipe.Parts) != 256 {
				t.Errorf("stacked %s: %v, recipe %v", w.Name, w.Shape, w.Recipe != nil)
			}
		}
	}
	if stacked != 48 {
		t.Errorf("%d stacked gate_up weights, want 48", stacked)
	}
	if len(p.Caches) != 48 {
		t.Errorf("caches: got %d, want 48", len(p.Caches))
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ patch, want string }{
		{`"num_experts":0`, "num_experts must be > 0"},
		{`"num_experts_per_tok":9`, "exceeds num_experts"},
		{`"mlp_only_layers":[0],"intermediate_size":0`, "layer 0 is dense"},
		{`"use_sliding_window":true`, "sliding"},
	} {
		js := `{"architectures":["Qwen3MoeForCausalLM"],"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,
			"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":32,"rope_theta":10000,"rms_norm_eps":1e-6,
			"num_experts":8,"num_experts_per_tok":2,"moe_intermediate_size":16,` + tc.patch + `}`
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
// reference weights exactly; f32 compute differs from transformers' only in
// summation order: 1e-4 of the tensor scale.
const tol = 1e-4

func TestGolden(t *testing.T) { testGolden(t, "") }

func testGolden(t *testing.T, dir string) {
	g, err := golden.Load("qwen3moe")
	if err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = g.Dir
	}
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
	g, err := golden.Load("qwen3moe")
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
	g, err := golden.Load("qwen3moe")
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

// A checkpoint with transformers v5's fused 3-D expert tensors
// (mlp.experts.gate_up_proj [E, 2I, H], mlp.experts.down_proj [E, H, I])
// binds them directly and gives the same goldens. The fused file is the
// hub checkpoint's per-expert tensors stacked as transformers' converter
// does (gate rows then up rows per expert).
func TestFusedExpertNames(t *testing.T) {
	g, err := golden.Load("qwen3moe")
	if err != nil {
		t.Fatal(err)
	}
	src, err := hf.OpenSafetensors(filepath.Join(g.Dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var out []hf.Tensor
	stacks := map[string][]*hf.Tensor{} // fused name -> parts in order
	for _, name := range src.Names() {
		tt, _ := src.Tensor(name)
		pre, rest, ok := strings.Cut(name, ".mlp.experts.")
		if !ok {
			out = append(out, *tt)
			continue
		}
		e, kind, _ := strings.Cut(rest, ".")
		idx, _ := strconv.Atoi(e)
		fused := pre + ".mlp.experts.gate_up_proj"
		if kind == "down_proj.weight" {
			fused = pre + ".mlp.experts.down_proj"
		}
		parts := stacks[fused]
		n := 1
		if kind != "down_proj.weight" {
			n = 2
		}
		for len(parts) < (idx+1)*n {
			parts = append(parts, nil)
		}
		slot := idx * n
		if kind == "up_proj.weight" {
			slot++
		}
		parts[slot] = tt
		stacks[fused] = parts
	}
	for name, parts := range stacks {
		var data []byte
		for _, p := range parts {
			data = append(data, p.Data...)
		}
		e := int64(len(parts))
		shape := []int64{e, parts[0].Shape[0], parts[0].Shape[1]}
		if strings.HasSuffix(name, "gate_up_proj") {
			shape = []int64{e / 2, 2 * parts[0].Shape[0], parts[0].Shape[1]}
		}
		out = append(out, hf.Tensor{Name: name, DType: parts[0].DType, Shape: shape, Data: data})
	}
	slices.SortFunc(out, func(a, b hf.Tensor) int { return strings.Compare(a.Name, b.Name) })
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := hf.WriteSafetensors(&buf, out, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(g.Dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	testGolden(t, dir)
}

// `pioc build qwen3-coder-30b-a3b` finds the model in a Hugging Face cache (the tiny
// checkpoint stands in for the real one) and builds an engine from it.
func TestBuildFromHFCache(t *testing.T) {
	g, err := golden.Load("qwen3moe")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	repo := filepath.Join(cache, "models--Qwen--Qwen3-Coder-30B-A3B-Instruct")
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
	res, err := compiler.Build(compiler.Options{Source: "qwen3-coder-30b-a3b", Output: out})
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
