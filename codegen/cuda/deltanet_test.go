package cuda

import (
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// coderNextShape is Qwen/Qwen3-Coder-Next's config at its real widths,
// four layers (three DeltaNet, one gated attention), dense MLPs in place of
// the MoE (the MoE templates are not this file's): the DeltaNet kernels
// depend on the widths, not the depth.
const coderNextShape = `{"architectures": ["Qwen3NextForCausalLM"], "model_type": "qwen3_next", "hidden_size": 2048, "intermediate_size": 5120,
	"num_hidden_layers": 4, "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
	"num_attention_heads": 16, "num_key_value_heads": 2, "head_dim": 256, "partial_rotary_factor": 0.25, "rope_theta": 5000000,
	"linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128, "linear_value_head_dim": 128,
	"linear_conv_kernel_dim": 4, "mlp_only_layers": [0, 1, 2, 3], "num_experts": 512, "num_experts_per_tok": 10,
	"moe_intermediate_size": 512, "shared_expert_intermediate_size": 512, "decoder_sparse_step": 1, "norm_topk_prob": true,
	"vocab_size": 151936, "rms_norm_eps": 1e-06, "tie_word_embeddings": false, "max_position_embeddings": 262144, "hidden_act": "silu"}`

// coderNextPlan builds the plan of coderNextShape with no checkpoint.
func coderNextPlan(t *testing.T, dt ir.DType) *ir.Plan {
	return widthsPlan(t, "coder-next", coderNextShape, dt, func(string) bool { return true })
}

func TestGenerateCoderNextShape(t *testing.T) {
	for _, dt := range []ir.DType{ir.BF16, ir.F32} {
		m, err := Generate(coderNextPlan(t, dt))
		if err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		for _, l := range m.Launches {
			if l.Mode == abi.Prefill && strings.HasPrefix(l.Kernel, "gated_delta_rule_chunk_") {
				t.Logf("%v: chunked delta rule: %d workspace floats per sequence", dt, l.Workspace)
			}
		}
	}
}

// deltaNetPlans are the plans of the tiny dense Qwen3-Next (DeltaNet and
// gated attention layers), fused and unfused, with bf16 and f32 weights.
func deltaNetPlans(t *testing.T) []namedPlan {
	var ps []namedPlan
	for _, dt := range []ir.DType{ir.BF16, ir.F32} {
		for _, fused := range []bool{true, false} {
			name := "qwen3next/dense/" + dt.String()
			if !fused {
				name += "/unfused"
			}
			ps = append(ps, namedPlan{name, buildPlan(t, "qwen3next/dense", dt, fused)})
		}
	}
	return ps
}

// TestGenerateDeltaNet: every step of the tiny Qwen3-Next plans gets a
// launch; the delta rule has a decode and a prefill launch (with its
// workspace), the state kernels get the slots and their state cache.
func TestGenerateDeltaNet(t *testing.T) {
	for _, c := range deltaNetPlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if strings.Contains(m.Source, "%!") {
			t.Errorf("%s: a format error in the source", c.name)
		}
		// The fused gated attention layer reads query, gate, k and v at their offsets.
		for _, want := range []string{"(2 * HQ * D + HKV * D + HKV * DV)", "(isq ? (long)u * 2 * D : (long)(HQ + u) * D)", "(2 * HQ + HKV) * D", "attn_gate_"} {
			if !strings.HasSuffix(c.name, "unfused") && !strings.Contains(m.Source, want) {
				t.Errorf("%s: gated attention: no %q in the source", c.name, want)
			}
		}
		seen := make([]int, len(c.plan.Steps))
		for _, l := range m.Launches {
			seen[l.Step]++
			s := c.plan.Steps[l.Step]
			switch s.Op {
			case ir.OpGatedDeltaRule, ir.OpConv1DCausal, ir.OpDeltaNetCore, ir.OpDeltaNetPrep:
				if strings.HasPrefix(l.Kernel, "deltanet_gated_norm_") || strings.HasPrefix(l.Kernel, "deltanet_prep_gates_") {
					break // the fused steps' epilogue and gates launches touch no state
				}
				var slots, cache bool
				for _, p := range l.Params {
					slots = slots || p.Kind == abi.PSlots
					cache = cache || p.Kind == abi.PCacheK && int64(p.Index) == s.Attr().Int("cache")
				}
				if !slots || !cache {
					t.Errorf("%s: step %d (%v): params %v lack the slots or the state cache", c.name, l.Step, s.Op, l.Params)
				}
				if (s.Op == ir.OpGatedDeltaRule || s.Op == ir.OpDeltaNetCore) && l.Mode == abi.Prefill && (l.Workspace <= 0 || l.Params[len(l.Params)-1].Kind != abi.PSeqWork) {
					t.Errorf("%s: step %d: chunked launch without its per-sequence workspace (PSeqWork)", c.name, l.Step)
				}
			}
		}
		n := 0
		for i, k := range seen {
			switch {
			case k == 0:
				t.Errorf("%s: step %d (%v) has no launch", c.name, i, c.plan.Steps[i].Op)
			case c.plan.Steps[i].Op == ir.OpGatedDeltaRule:
				n++
				if k != 2 {
					t.Errorf("%s: step %d: %d launches, want decode and prefill", c.name, i, k)
				}
			case c.plan.Steps[i].Op == ir.OpDeltaNetCore:
				n++
				if k != 3 {
					t.Errorf("%s: step %d: %d launches, want decode, prefill and the gated-norm epilogue", c.name, i, k)
				}
			}
		}
		if n != 3 {
			t.Errorf("%s: %d delta-rule steps, want 3", c.name, n)
		}
		wants := []string{"conv1d_causal_", "gated_delta_rule_rec_", "gated_delta_rule_chunk_", "deltanet_decay_", "section_", "concat_"}
		if !strings.HasSuffix(c.name, "unfused") { // fuse-deltanet: prep and core
			wants = []string{"deltanet_prep_conv_", "deltanet_prep_gates_", "gated_delta_rule_rec_", "gated_delta_rule_chunk_", "deltanet_gated_norm_"}
		}
		for _, want := range wants {
			if countPrefix(m.Kernels, want) == 0 {
				t.Errorf("%s: no %s kernel", c.name, want)
			}
		}
	}
}

// TestGenerateDeltaNetRejects: a state step whose cache is not the state
// cache it needs is refused with the step named.
func TestGenerateDeltaNetRejects(t *testing.T) {
	p := buildPlan(t, "qwen3next/dense", ir.F32, true)
	for i, s := range p.Steps {
		if s.Op != ir.OpGatedDeltaRule && s.Op != ir.OpConv1DCausal {
			continue
		}
		bad := *p
		bad.Steps = append([]ir.Step(nil), p.Steps...)
		attrs := append(ir.Attrs(nil), s.Attrs...)
		for j := range attrs {
			if attrs[j].Key == "cache" {
				attrs[j].I = 2 // the full-attention layer's KV cache
			}
		}
		bad.Steps[i].Attrs = attrs
		if _, err := Generate(&bad); err == nil || !strings.Contains(err.Error(), "not an f32 state cache") {
			t.Errorf("step %d (%v) on a KV cache: got %v", i, s.Op, err)
		}
	}
}

// TestCompileDeltaNet compiles every kernel of the tiny Qwen3-Next plans
// (f32 and bf16, fused and unfused) and of the real Qwen3-Coder-Next widths
// (coderNextShape) for every target arch with nvcc, warnings as errors.
func TestCompileDeltaNet(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	src := NewKernelSource()
	plans := deltaNetPlans(t)
	for _, dt := range []ir.DType{ir.BF16, ir.F32} {
		plans = append(plans, namedPlan{"coder-next/" + dt.String(), coderNextPlan(t, dt)})
	}
	for _, c := range plans {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatal(err)
		}
		src.Add(m, nil, nil)
	}
	CompileEveryArch(t, nvcc, src.String(), src.Names)
	t.Logf("%d kernels compiled for %v", len(src.Names), DefaultArchs)
}
