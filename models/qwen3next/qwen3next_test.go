package qwen3next_test

import (
	"context"
	"fmt"
	"go/parser"
	"go/token"
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
	_ "github.com/inference-pio/pio/models/all"
	"github.com/inference-pio/pio/models/qwen3next"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/scheduler"
)

// coderNext is the Qwen3-Coder-Next release config.json (v4 spelling:
// full_attention_interval, rope_theta, partial_rotary_factor).
const coderNext = `{"architectures":["Qwen3NextForCausalLM"],"model_type":"qwen3_next","hidden_size":2048,
	"num_hidden_layers":48,"full_attention_interval":4,"num_attention_heads":16,"num_key_value_heads":2,"head_dim":256,
	"partial_rotary_factor":0.25,"rope_theta":5000000,"rope_scaling":null,"linear_num_key_heads":16,
	"linear_num_value_heads":32,"linear_key_head_dim":128,"linear_value_head_dim":128,"linear_conv_kernel_dim":4,
	"num_experts":512,"num_experts_per_tok":10,"moe_intermediate_size":512,"shared_expert_intermediate_size":512,
	"norm_topk_prob":true,"decoder_sparse_step":1,"mlp_only_layers":[],"intermediate_size":5120,"vocab_size":151936,
	"max_position_embeddings":262144,"rms_norm_eps":1e-6,"tie_word_embeddings":false,"bos_token_id":151643,
	"eos_token_id":151645,"torch_dtype":"bfloat16","hidden_act":"silu"}`

func parse(t testing.TB, js string) *hf.Config {
	t.Helper()
	cfg, err := hf.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// stateBytes sums the per-sequence state caches of a plan (the CPU backend
// keeps them in f32).
func stateBytes(p *ir.Plan) int64 {
	var n int64
	for _, c := range p.Caches {
		if c.Kind != ir.CacheState {
			continue
		}
		for _, e := range c.Entries {
			k, _ := e.Elems(0, 0)
			n += 4 * k
		}
	}
	return n
}

// The release config builds and lowers with no weights: 36 DeltaNet layers
// (two state caches each) and 12 gated-attention layers (a KV cache each);
// the state per sequence is 36 × (32·128·128 + 8192·3) f32 = 79 036 416 bytes.
func TestCoderNextBuildsAndLowers(t *testing.T) {
	cfg := parse(t, coderNext)
	qc, err := qwen3next.ParseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if qc.RotaryDims != 64 || qc.LayerTypes[3] != qwen3next.FullAttention || qc.LayerTypes[4] != qwen3next.LinearAttention {
		t.Fatalf("parsed %d rotary dims, layer types %v", qc.RotaryDims, qc.LayerTypes[:5])
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
	var kv, state int
	for _, c := range p.Caches {
		switch c.Kind {
		case ir.CacheKV:
			kv++
		case ir.CacheState:
			state++
		}
	}
	if kv != 12 || state != 72 {
		t.Errorf("caches: %d kv, %d state; want 12 and 72", kv, state)
	}
	const want = 36 * (32*128*128 + 8192*3) * 4
	if got := stateBytes(p); got != want || qc.StateBytesPerSequence() != want {
		t.Errorf("state bytes per sequence: plan %d, config %d; want %d", got, qc.StateBytesPerSequence(), want)
	}
	// Stacked experts are derived weights: 512 experts × 2 × 512 rows.
	for _, w := range p.Weights {
		if w.Name == "model.layers.0.mlp.experts.gate_up_proj" {
			if !w.Shape.Equal(ir.Sh(512*1024, 2048)) || w.Recipe == nil || len(w.Recipe.Parts) != 1024 {
				t.Errorf("gate_up: %v with %v", w.Shape, w.Recipe)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	base := `"architectures":["Qwen3NextForCausalLM"],"hidden_size":32,"num_hidden_layers":2,"num_attention_heads":4,
		"num_key_value_heads":2,"head_dim":16,"partial_rotary_factor":0.5,"rope_theta":10000,"linear_num_key_heads":2,
		"linear_num_value_heads":4,"linear_key_head_dim":8,"linear_value_head_dim":8,"linear_conv_kernel_dim":4,
		"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":8,"shared_expert_intermediate_size":8,
		"intermediate_size":16,"vocab_size":64,"rms_norm_eps":1e-6`
	for _, tc := range []struct{ patch, want string }{
		{`"linear_num_value_heads":3`, "not a multiple of linear_num_key_heads"},
		{`"layer_types":["linear_attention"]`, "layer_types has 1 entries for 2 layers"},
		{`"layer_types":["linear_attention","sliding"]`, `layer_types[1] is "sliding"`},
		{`"num_experts_per_tok":5`, "num_experts_per_tok 5 must be in [1, 4]"},
		{`"linear_conv_kernel_dim":1`, "linear_conv_kernel_dim 1"},
		{`"full_attention_interval":0`, "full_attention_interval must be > 0"},
		{`"linear_key_head_dim":0`, "linear_key_head_dim must be > 0"},
	} {
		// A later duplicate key wins in encoding/json and in our parser.
		cfg, err := hf.ParseConfig([]byte("{" + base + "," + tc.patch + "}"))
		if err == nil {
			_, err = models.New(cfg)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.patch, err, tc.want)
		}
	}
}

// build compiles a tiny checkpoint (with taps) and loads it on the CPU
// backend; it skips when the backend lacks an op the model uses (the MoE
// kernels land separately).
func build(t *testing.T, dir string, dt ir.DType) *cpu.Backend {
	t.Helper()
	be, _ := buildWithPlan(t, dir, dt)
	return be
}

// buildWithPlan is build that also returns the engine's plan.
func buildWithPlan(t *testing.T, dir string, dt ir.DType) (*cpu.Backend, *ir.Plan) {
	e, be := modeltest.Build(t, dir, dt, true, geometry)
	return be, e.Meta.Plan
}

var geometry = cpu.Options{MaxTokens: 256, BlockSize: 16, NumBlocks: 64, MaxSeqs: 4}

// forward runs sequences in one step (sequence i in slot i), keeping every
// row's logits.
func forward(t *testing.T, be *cpu.Backend, seqs ...[]int32) {
	modeltest.Forward(t, be, geometry, seqs...)
}

func output(t *testing.T, be *cpu.Backend, name string) []float32 {
	return modeltest.Output(t, be, name)
}

// Tolerance: f32 compute against transformers' f32 from the same (bf16)
// weights differs only in summation order and in the chunked delta rule's
// association (the UT transform): 1e-4 of the tensor scale.
const tol = 1e-4

var variants = []string{"qwen3next/dense", "qwen3next/moe"}

// Per-layer hidden states, the final norm and the logits of full forwards
// (prompts of 5, 70 and 131 tokens: the chunked form crosses one and two
// chunk boundaries) match transformers, and so does the greedy
// continuation through modeltest.Generator (chunked prefill, then recurrent
// one-token decode).
func TestGolden(t *testing.T) {
	for _, name := range variants {
		for _, dt := range []ir.DType{ir.F32, ir.BF16} {
			t.Run(fmt.Sprintf("%s/%v", name, dt), func(t *testing.T) {
				g, err := golden.Load(name)
				if err != nil {
					t.Fatal(err)
				}
				be := build(t, g.Dir, dt)
				for pi, p := range g.Prompts {
					forward(t, be, p.IDs)
					check := func(what string, got, want []float32) {
						if e := golden.RelErr(got, want); !tolerance.Within(t, e, tol) {
							t.Errorf("prompt %d (%d tokens) %s: relative error %.3g > %.3g", pi, len(p.IDs), what, e, tol)
						}
					}
					for l, want := range p.Hidden {
						check(fmt.Sprintf("hidden.%d", l), output(t, be, fmt.Sprintf("hidden.%d", l)), want)
					}
					check("norm", output(t, be, "norm"), p.Norm)
					check("logits", output(t, be, "logits"), p.Logits)
				}
				gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 16), 64)
				for pi, p := range g.Prompts {
					got, err := gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: len(p.Greedy)}, nil)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, p.Greedy) {
						t.Errorf("prompt %d greedy:\n got %v\nwant %v", pi, got, p.Greedy)
					}
				}
			})
		}
	}
}

// Prefill in steps of several sizes (a 70-token chunked run, short runs,
// one-token recurrent steps) gives the logits of one full forward, row by
// row: the conv and recurrent states carry across steps exactly. The two
// sides differ by f32 rounding of different algorithms (the chunked form
// over up to 131 positions vs the recurrent one), which varies by CPU:
// measured up to 4.4e-6 (generic), 6.3e-6 (avx2), 7.7e-6 (avx512) over the
// 42 checks, so the bound is 3e-5; a step that lost the states (position
// 70 fed after dropping the 70-token run) differs by 1.0 to 1.8.
func TestDecodeAfterPrefillEqualsFullForward(t *testing.T) {
	for _, name := range variants {
		t.Run(name, func(t *testing.T) {
			g, err := golden.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			be := build(t, g.Dir, ir.F32)
			p := g.Prompts[2]
			forward(t, be, p.IDs)
			full := output(t, be, "logits")
			vocab := len(full) / len(p.IDs)

			gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 16), 256)
			var s modeltest.Sequence
			defer gen.Release(&s)
			at := 0
			runs := []int{70, 1, 1, 1, 3, 1, 40}
			for n := 117; n < len(p.IDs); n++ {
				runs = append(runs, 1)
			}
			for _, n := range runs {
				logits, err := gen.Feed(&s, p.IDs[at:at+n])
				if err != nil {
					t.Fatal(err)
				}
				at += n
				if e := golden.RelErr(logits, full[(at-1)*vocab:at*vocab]); !tolerance.Within(t, e, 3e-5) {
					t.Errorf("after a run of %d ending at position %d: relative error %.3g", n, at-1, e)
				}
			}
			if at != len(p.IDs) {
				t.Fatalf("fed %d of %d tokens", at, len(p.IDs))
			}
		})
	}
}

// A batch of the three prompts (5, 70, 131 tokens, slots 0–2) in one step
// equals each prompt alone.
func TestBatchEqualsAlone(t *testing.T) {
	for _, name := range variants {
		t.Run(name, func(t *testing.T) {
			g, err := golden.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			be := build(t, g.Dir, ir.F32)
			var alone [][]float32
			var all [][]int32
			for _, p := range g.Prompts {
				forward(t, be, p.IDs)
				alone = append(alone, output(t, be, "logits"))
				all = append(all, p.IDs)
			}
			forward(t, be, all...)
			got := output(t, be, "logits")
			off := 0
			for i, want := range alone {
				if e := golden.RelErr(got[off:off+len(want)], want); !tolerance.Within(t, e, 1e-5) {
					t.Errorf("prompt %d in the batch: relative error %.3g", i, e)
				}
				off += len(want)
			}
		})
	}
}

// The tiny model's state per sequence: 3 DeltaNet layers × (conv 80×3 +
// recurrent 4×8×12) f32.
func TestTinyStateBytes(t *testing.T) {
	g, err := golden.Load("qwen3next/dense")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := hf.LoadConfig(filepath.Join(g.Dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	qc, err := qwen3next.ParseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := qc.StateBytesPerSequence(), int64(3*(80*3+4*8*12)*4); got != want {
		t.Errorf("state bytes: got %d, want %d", got, want)
	}
}

// `pioc build qwen3-coder-next` finds the checkpoint in a Hugging Face cache
// (snapshot files symlinked to blobs, as the hub client lays them out); the
// tiny checkpoint (dense MLPs) stands in for the real one.
func TestBuildByNameFromHFCache(t *testing.T) {
	g, err := golden.Load("qwen3next/dense")
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	repo := filepath.Join(cache, "models--Qwen--Qwen3-Coder-Next")
	snap := filepath.Join(repo, "snapshots", "0123abcd")
	for _, d := range []string{snap, filepath.Join(repo, "blobs"), filepath.Join(repo, "refs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte("0123abcd"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors"} {
		data, err := os.ReadFile(filepath.Join(g.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		blob := filepath.Join(repo, "blobs", "blob-"+f)
		if err := os.WriteFile(blob, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..", "..", "blobs", "blob-"+f), filepath.Join(snap, f)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HF_HUB_CACHE", cache)
	out := filepath.Join(t.TempDir(), "next.pio")
	if _, err := compiler.Build(compiler.Options{Source: "qwen3-coder-next", Output: out, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(out, engine.OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	be, err := cpu.FromEngine(e, cpu.Options{MaxTokens: 256, BlockSize: 16, NumBlocks: 64, MaxSeqs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	p := g.Prompts[1]
	got, err := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 16), 64).Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: len(p.Greedy)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, p.Greedy) {
		t.Errorf("greedy:\n got %v\nwant %v", got, p.Greedy)
	}
}

// The scheduler's continuous batching (chunked prefill under a 48-token
// budget, mixed with decode steps; each sequence in its own state slot)
// reproduces every prompt's greedy continuation. A second round of the same
// prompts must not take their cached prefixes (the DeltaNet state is not in
// the blocks); until the scheduler turns prefix reuse off for models with
// state caches, the backend's refusal skips that round.
func TestContinuousBatching(t *testing.T) {
	for _, name := range variants {
		t.Run(name, func(t *testing.T) {
			g, err := golden.Load(name)
			if err != nil {
				t.Fatal(err)
			}
			be, plan := buildWithPlan(t, g.Dir, ir.F32)
			if scheduler.PrefixCacheable(plan) {
				t.Fatal("a plan with DeltaNet state caches must not be prefix-cacheable")
			}
			s, err := scheduler.New(be, kvcache.NewAllocator(64, 16), scheduler.Config{MaxStepTokens: 48, MaxSeqs: 4, NoPrefixCache: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for round := range 2 { // the second round meets the first round's cached prefixes
				var streams []*scheduler.Stream
				for _, p := range g.Prompts {
					st, err := s.Submit(context.Background(), scheduler.Request{Prompt: p.IDs, MaxTokens: len(p.Greedy)})
					if err != nil {
						t.Fatal(err)
					}
					streams = append(streams, st)
				}
				for i, st := range streams {
					var got []int32
					for {
						toks, done, why, err := st.Next(context.Background(), nil)
						for _, r := range toks {
							got = append(got, r.Token)
						}
						if done {
							if err != nil || why != scheduler.FinishLength {
								t.Errorf("round %d prompt %d: finished %q, %v", round, i, why, err)
							}
							break
						}
					}
					if !slices.Equal(got, g.Prompts[i].Greedy) {
						t.Errorf("round %d prompt %d:\n got %v\nwant %v", round, i, got, g.Prompts[i].Greedy)
					}
				}
			}
		})
	}
}

// models/all imports this package, so pioc and piort know the architecture
// (this test binary registers it either way, hence the source check).
func TestRegisteredInAll(t *testing.T) {
	root, err := golden.Root() // <repo>/testdata/tiny
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "..", "..", "models", "all", "all.go"), nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		if imp.Path.Value == `"github.com/inference-pio/pio/models/qwen3next"` {
			return
		}
	}
	t.Error("models/all/all.go does not import models/qwen3next")
}
