package passes

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// Pass is one named graph rewrite. Fusion passes only change how the
// graph is computed, never what: Options.NoFuse skips them, to build the
// unfused engines fused ones are compared with.
type Pass struct {
	Name   string
	Run    func(*ir.Graph) error
	Doc    string
	Fusion bool
}

// Pipeline is the ordered list of passes every build runs.
var Pipeline = []Pass{
	{Name: "cse", Run: CSE, Doc: "merge pure values that compute the same thing"},
	{Name: "fold", Run: Fold, Doc: "fold reshapes, whole sections and nested weight concats"},
	{Name: "fuse-moe-routing", Run: FuseMoERouting, Doc: "the MoE's routing (router GEMM + top-k + expert weights) into its grouped expert step (moe_routed)", Fusion: true},
	{Name: "fuse-sibling-matmuls", Run: FuseSiblingMatMuls, Doc: "one GEMM over concatenated weights for the matmuls that read the same x (q/k/v, gate/up, q_a/kv_a)", Fusion: true},
	{Name: "fuse-swiglu", Run: FuseSwiGLU, Doc: "SwiGLU in the epilogue of the fused gate/up GEMM", Fusion: true},
	{Name: "fuse-norm-matmul", Run: FuseNormMatMul, Doc: "RMSNorm in the prologue of the GEMMs that read it", Fusion: true},
	{Name: "fuse-attn-input", Run: FuseAttnInput, Doc: "q/k norm + RoPE + KV-cache write + attention over the fused qkv row", Fusion: true},
	{Name: "fuse-deltanet", Run: FuseDeltaNet, Doc: "DeltaNet conv + gates from the projection row (deltanet_prep); delta rule + gated RMSNorm ⊙ silu(z) (deltanet_core)", Fusion: true},
	{Name: "fuse-add-norm", Run: FuseAddNorm, Doc: "residual add + RMSNorm where the sum has no other reader", Fusion: true},
	{Name: "fuse-residual", Run: FuseResidual, Doc: "residual add in the epilogue of the GEMM producing it", Fusion: true},
	{Name: "refold", Run: Fold, Doc: "fold again what fusion exposed (ranges of fused GEMM results)"},
	{Name: "dce", Run: DeadCode, Doc: "remove values no output or side effect needs"},
}

// Constraint says pass Before must run before pass After, and why.
type Constraint struct {
	Before, After string
	Why           string
}

// Order lists the ordering constraints on Pipeline, each with its reason.
var Order = []Constraint{
	{"cse", "fuse-sibling-matmuls", "sibling matmuls are found by their shared activation value; duplicates must be one value first"},
	{"fold", "fuse-sibling-matmuls", "reshape chains and nested concats are canonical before patterns match them"},
	{"fuse-moe-routing", "fuse-sibling-matmuls", "the router must still be its own matmul: horizontal fusion would merge it with the shared expert's projections of the same x"},
	{"fuse-moe-routing", "fuse-norm-matmul", "moe_routed must exist to take the norm into its prologue"},
	{"fuse-moe-routing", "fuse-residual", "moe_routed must exist to take the residual add into its epilogue"},
	{"fuse-sibling-matmuls", "fuse-swiglu", "the SwiGLU epilogue pattern reads the two sections of the fused gate/up GEMM"},
	{"fuse-sibling-matmuls", "fuse-norm-matmul", "after horizontal fusion a norm has one GEMM reader, so the prologue computes it once"},
	{"fuse-sibling-matmuls", "fuse-attn-input", "qkv_attention reads q, k and v as sections of one fused projection"},
	{"fold", "fuse-deltanet", "z reaches silu through a reshape chain; deltanet_core reads it as one folded view"},
	{"fuse-norm-matmul", "fuse-add-norm", "a norm feeding a GEMM is better in the GEMM's prologue; add_rms_norm takes only the rest"},
	{"fuse-add-norm", "fuse-residual", "add_rms_norm needs the add that fuse-residual would otherwise move into a GEMM epilogue"},
	{"fuse-residual", "refold", "refold merges ranges of the sections that fusion made, once the fusions that read them whole are done"},
	{"refold", "dce", "folding and fusions leave unread values behind for dce to remove"},
}

// Options control Run.
type Options struct {
	// Check runs the verifier before the first pass and after every pass.
	Check bool
	// DumpDir, when set, receives the graph's text after each pass as
	// NN-<pass>.ir (and 00-input.ir).
	DumpDir string
	// DumpOnly limits dumps to one named pass.
	DumpOnly string
	// NoFuse skips the fusion passes (unfused engines, for comparison).
	NoFuse bool
	// Skip names passes to leave out (to isolate one fusion's effect).
	Skip []string
}

// Run applies Pipeline to g in order.
func Run(g *ir.Graph, opt Options) error {
	list := Pipeline
	if opt.NoFuse {
		list = Unfused()
	}
	if len(opt.Skip) > 0 {
		var kept []Pass
		for _, p := range list {
			if !slices.Contains(opt.Skip, p.Name) {
				kept = append(kept, p)
			}
		}
		names := Names(Pipeline)
		for _, name := range opt.Skip {
			if !slices.Contains(names, name) {
				return fmt.Errorf("passes: skip %q: not a pass of the pipeline (%s)", name, strings.Join(names, ", "))
			}
		}
		list = kept
	}
	return RunPasses(g, list, opt)
}

// Names lists the names of the passes in list, in order.
func Names(list []Pass) []string {
	names := make([]string, len(list))
	for i, p := range list {
		names[i] = p.Name
	}
	return names
}

// Unfused returns Pipeline without its fusion passes.
func Unfused() []Pass {
	var list []Pass
	for _, p := range Pipeline {
		if !p.Fusion {
			list = append(list, p)
		}
	}
	return list
}

// RunPasses applies a list of passes.
func RunPasses(g *ir.Graph, list []Pass, opt Options) error {
	if opt.Check {
		if err := ir.Verify(g); err != nil {
			return fmt.Errorf("passes: input: %w", err)
		}
	}
	if err := dump(g, opt, 0, "input"); err != nil {
		return err
	}
	for i, p := range list {
		if err := p.Run(g); err != nil {
			return fmt.Errorf("passes: %s: %w", p.Name, err)
		}
		if opt.Check {
			if err := ir.Verify(g); err != nil {
				return fmt.Errorf("passes: %s: after the pass: %w", p.Name, err)
			}
		}
		if err := dump(g, opt, i+1, p.Name); err != nil {
			return err
		}
	}
	return nil
}

func dump(g *ir.Graph, opt Options, i int, name string) error {
	if opt.DumpDir == "" || (opt.DumpOnly != "" && opt.DumpOnly != name) {
		return nil
	}
	if err := os.MkdirAll(opt.DumpDir, 0o755); err != nil {
		return fmt.Errorf("passes: %s: dump: %w", name, err)
	}
	file := filepath.Join(opt.DumpDir, fmt.Sprintf("%02d-%s.ir", i, name))
	if err := os.WriteFile(file, []byte(ir.Print(g)), 0o644); err != nil {
		return fmt.Errorf("passes: %s: dump: %w", name, err)
	}
	return nil
}

// CheckOrder reports the first constraint the list violates.
func CheckOrder(list []Pass, order []Constraint) error {
	at := map[string]int{}
	for i, p := range list {
		if _, dup := at[p.Name]; dup {
			return fmt.Errorf("passes: %s: in the pipeline twice", p.Name)
		}
		at[p.Name] = i
	}
	for _, c := range order {
		b, okb := at[c.Before]
		a, oka := at[c.After]
		if !okb || !oka {
			return fmt.Errorf("passes: constraint %s < %s names a pass not in the pipeline", c.Before, c.After)
		}
		if b >= a {
			return fmt.Errorf("passes: %s must run before %s: %s", c.Before, c.After, c.Why)
		}
	}
	return nil
}
