package cuda

import (
	"regexp"
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// moeModels are the tiny MoE and MLA checkpoints of testdata/tiny.
var moeModels = []string{"qwen3moe", "glm4moelite"}

// moeRealShapes are Qwen3-Coder-30B-A3B and GLM-4.7-Flash at their real
// widths (../shared/MODELS.md §3.1 and §5.1), two layers each (GLM's first
// dense): the kernels depend on the widths, not on the depth.
var moeRealShapes = map[string]string{
	"qwen3-coder-30b-a3b": `{"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
		"num_hidden_layers": 2, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936,
		"num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768, "norm_topk_prob": true, "decoder_sparse_step": 1,
		"mlp_only_layers": [], "rms_norm_eps": 1e-06, "rope_theta": 10000000, "tie_word_embeddings": false,
		"max_position_embeddings": 262144, "hidden_act": "silu"}`,
	"glm-4.7-flash": `{"architectures": ["Glm4MoeLiteForCausalLM"], "model_type": "glm4_moe_lite", "hidden_size": 2048, "intermediate_size": 10240,
		"num_hidden_layers": 2, "mlp_layer_types": ["dense", "sparse"], "num_attention_heads": 20, "num_key_value_heads": 20,
		"q_lora_rank": 768, "kv_lora_rank": 512, "qk_nope_head_dim": 192, "qk_rope_head_dim": 64, "qk_head_dim": 256, "v_head_dim": 256,
		"moe_intermediate_size": 1536, "n_routed_experts": 64, "num_experts_per_tok": 4, "n_shared_experts": 1, "n_group": 1, "topk_group": 1,
		"norm_topk_prob": true, "routed_scaling_factor": 1.8, "vocab_size": 154880, "rms_norm_eps": 1e-05, "rope_interleave": true,
		"rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "tie_word_embeddings": false,
		"max_position_embeddings": 202752, "hidden_act": "silu"}`,
}

// moeConfigPlan builds the bf16 plan of a config with no checkpoint (every
// weight the model asks for is taken to exist).
func moeConfigPlan(t *testing.T, name string) *ir.Plan {
	return widthsPlan(t, name, moeRealShapes[name], ir.BF16, func(string) bool { return true })
}

// moePlans are the goldens' plans, fused and unfused, with bf16 and f32
// weights, and the real-width plans.
func moePlans(t *testing.T) []namedPlan {
	var ps []namedPlan
	for _, name := range []string{"qwen3-coder-30b-a3b", "glm-4.7-flash"} {
		ps = append(ps, namedPlan{name, moeConfigPlan(t, name)})
	}
	for _, name := range moeModels {
		for _, dt := range []ir.DType{ir.BF16, ir.F32} {
			ps = append(ps, namedPlan{name + "/" + dt.String(), planOf(t, name, dt)})
			ps = append(ps, namedPlan{name + "/" + dt.String() + "/unfused", unfusedPlanOf(t, name, dt)})
		}
	}
	return ps
}

// TestGenerateMoEPlans: every step of the MoE and MLA goldens' plans has a
// launch, every MoE op family template is used, and the workspace of the
// expert kernels covers their scratch.
func TestGenerateMoEPlans(t *testing.T) {
	used := map[string]bool{}
	for _, c := range moePlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		seen := make([]bool, len(c.plan.Steps))
		for _, l := range m.Launches {
			seen[l.Step] = true
			if l.Block <= 0 || l.Block > 1024 || l.Block%32 != 0 {
				t.Errorf("%s: step %d: block %d", c.name, l.Step, l.Block)
			}
			op := c.plan.Steps[l.Step].Op
			for _, p := range l.Params {
				if p.Kind == abi.PWorkspace && l.Workspace <= 0 && (op == ir.OpMoE || op == ir.OpMoERouted) {
					t.Errorf("%s: step %d (%v): %s takes the workspace but asks for none", c.name, l.Step, op, l.Kernel)
				}
			}
			used[l.Kernel[:strings.LastIndex(l.Kernel, "_")]] = true
		}
		for i, ok := range seen {
			if !ok {
				t.Errorf("%s: step %d (%v) has no launch", c.name, i, c.plan.Steps[i].Op)
			}
		}
	}
	for _, k := range []string{"moe_route", "moe_group", "moe_gate_up", "moe_down", "moe_gate_up_mma", "moe_down_mma", "moe_combine", "moe_norm", "moe_router",
		"section", "head_matmul", "head_matmul_t", "latent_append", "mla_attention", "mla_combine"} {
		if !used[k] {
			t.Errorf("no plan launches %s", k)
		}
	}
}

// TestCompileMoEModels compiles every kernel of the MoE and MLA goldens'
// plans for every target arch with the real nvcc (warnings as errors); it
// skips where nvcc is absent.
func TestCompileMoEModels(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	src := NewKernelSource()
	for _, c := range moePlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatal(err)
		}
		src.Add(m, nil, nil)
	}
	CompileEveryArch(t, nvcc, src.String(), src.Names)
	t.Logf("%d kernels compiled for %v", len(src.Names), DefaultArchs)
}

// TestMoEMMALaunches: at the real widths, the tensor-core expert kernels run
// in steps of more than WarpMaxRows tokens only (one launch of each at any
// T), next to the SIMT kernels (which take the experts with few pairs), and
// their grid covers the tile table of moe_group for any split of the T·K
// pairs: experts of 17 pairs (one mostly empty tile each, the most tiles
// per pair), of 64, 65 and more, or of all T, at every T up to 600.
func TestMoEMMALaunches(t *testing.T) {
	for _, name := range []string{"qwen3-coder-30b-a3b", "glm-4.7-flash"} {
		p := moeConfigPlan(t, name)
		m, err := Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		for i, s := range p.Steps {
			if s.Op != ir.OpMoERouted && s.Op != ir.OpMoE {
				continue
			}
			steps++
			e, k := int(s.Attr().Int("experts")), int(s.Attr().Int("k"))
			if e <= 0 || k <= 0 {
				t.Fatalf("%s: step %d (%v): %d experts, top-%d", name, i, s.Op, e, k)
			}
			for T := 1; T <= 600; T++ {
				runs := map[string][]abi.Launch{}
				for _, l := range m.Launches {
					if l.Step == i && l.Runs(T, T, T == 1) {
						family := l.Kernel[:strings.LastIndex(l.Kernel, "_")]
						runs[family] = append(runs[family], l)
					}
				}
				for _, f := range []string{"moe_group", "moe_gate_up", "moe_down", "moe_combine"} {
					if len(runs[f]) != 1 {
						t.Fatalf("%s: step %d, T=%d: %d launches of %s", name, i, T, len(runs[f]), f)
					}
				}
				for _, f := range []string{"moe_gate_up_mma", "moe_down_mma"} {
					want := 0
					if T > WarpMaxRows {
						want = 1
					}
					if len(runs[f]) != want {
						t.Fatalf("%s: step %d, T=%d: %d launches of %s, want %d", name, i, T, len(runs[f]), f, want)
					}
					for _, l := range runs[f] {
						for _, per := range []int{17, 18, 33, 64, 65, 80, 129, T} {
							tiles := moeTilesOf(T, k, e, min(per, T))
							if g := l.Grid[1].Eval(int64(T), 0, 0, 0); g < int64(tiles) {
								t.Fatalf("%s: %s: T=%d, experts of %d pairs: %d tiles, grid y %d", name, l.Kernel, T, per, tiles, g)
							}
						}
					}
				}
			}
		}
		if steps == 0 {
			t.Errorf("%s: no MoE step", name)
		}
	}
}

// moeTilesOf counts the tile table's entries (moe_group) when the T·k
// pairs fill experts of per pairs each in turn, the rest going to the next.
func moeTilesOf(T, k, e, per int) int {
	tiles := 0
	for left, ex := T*k, 0; left > 0 && ex < e; ex++ {
		c := min(per, left)
		if ex == e-1 {
			c = min(left, T)
		}
		left -= c
		if c > moeMMAMinPairs {
			tiles += (c + moeMMARows - 1) / moeMMARows
		}
	}
	return tiles
}

// TestMoERegisters compiles the tensor-core expert kernels of
// Qwen3-Coder-30B-A3B and GLM-4.7-Flash for sm_90a with ptxas's report:
// none spills, and none needs more registers than two 256-thread blocks
// per SM allow (128). Skips without nvcc.
func TestMoERegisters(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	var src strings.Builder
	src.WriteString(prelude)
	n := 0
	for _, name := range []string{"qwen3-coder-30b-a3b", "glm-4.7-flash"} {
		m, err := Generate(moeConfigPlan(t, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range m.bodies {
			if strings.Contains(b, "void __launch_bounds__(256) moe_gate_up_mma_") || strings.Contains(b, "void __launch_bounds__(256) moe_down_mma_") {
				src.WriteString("\n" + b)
				n++
			}
		}
	}
	if n != 4 {
		t.Fatalf("%d tensor-core expert kernels, want 4", n)
	}
	out := PtxasReport(t, nvcc, src.String(), "sm_90a")
	es := ptxasEntries(out, "moe_")
	checkRegisters(t, es, 128)
	if len(es) != n {
		t.Errorf("ptxas reported on %d kernels, want %d:\n%s", len(es), n, out)
	}
}

var kernelDecl = regexp.MustCompile(`(?m)^extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\((.*)\) \{$`)

// TestMoELaunchParams: every launch of an MoE kernel passes as many
// parameters as the kernel declares, pointers where it takes pointers (the
// driver reads one value per declared parameter from the launch's array).
func TestMoELaunchParams(t *testing.T) {
	for _, c := range moePlans(t) {
		m, err := Generate(c.plan)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		sigs := map[string][]string{}
		for _, b := range m.bodies {
			for _, d := range kernelDecl.FindAllStringSubmatch(b, -1) {
				sigs[d[1]] = strings.Split(d[2], ", ")
			}
		}
		for _, l := range m.Launches {
			if !strings.HasPrefix(l.Kernel, "moe_") {
				continue
			}
			sig, ok := sigs[l.Kernel]
			if !ok {
				t.Fatalf("%s: no signature of %s", c.name, l.Kernel)
			}
			if len(sig) != len(l.Params) {
				t.Errorf("%s: %s declares %d parameters (%v), the launch passes %d (%v)", c.name, l.Kernel, len(sig), sig, len(l.Params), l.Params)
				continue
			}
			for i, p := range l.Params {
				if ptr := strings.Contains(sig[i], "*"); ptr != p.IsPointer() {
					t.Errorf("%s: %s: parameter %d is %q, the launch passes %v", c.name, l.Kernel, i, sig[i], p)
				}
			}
		}
	}
}
