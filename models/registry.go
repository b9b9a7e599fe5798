package models

import (
	"fmt"
	"sort"
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
)

// Entry is a model that `pioc build NAME` knows by name.
type Entry struct {
	Name         string // what users type: "qwen3-0.6b"
	HFRepo       string // Hugging Face repo id: "Qwen/Qwen3-0.6B"
	Architecture string // config.json "architectures"[0]
	Note         string
}

var entries = []Entry{
	{"qwen3-0.6b", "Qwen/Qwen3-0.6B", "Qwen3ForCausalLM", "dense, GQA, q/k norm, tied embeddings"},
	{"qwen3-4b-instruct-2507", "Qwen/Qwen3-4B-Instruct-2507", "Qwen3ForCausalLM", "dense, 256K context"},
	{"qwen3-coder-30b-a3b", "Qwen/Qwen3-Coder-30B-A3B-Instruct", "Qwen3MoeForCausalLM", "128 experts, top-8"},
	{"qwen3-coder-next", "Qwen/Qwen3-Coder-Next", "Qwen3NextForCausalLM", "Gated DeltaNet hybrid, 512 experts"},
	{"glm-4.7-flash", "zai-org/GLM-4.7-Flash", "Glm4MoeLiteForCausalLM", "MLA, sigmoid routing"},
	{"qwen3-vl-2b", "Qwen/Qwen3-VL-2B-Instruct", "Qwen3VLForConditionalGeneration", "vision + DeepStack + MRoPE"},
}

// Find looks a model up by name (case-insensitive).
func Find(name string) (Entry, bool) {
	for _, e := range entries {
		if strings.EqualFold(e.Name, name) {
			return e, true
		}
	}
	return Entry{}, false
}

// List returns every named model, with whether its architecture is built
// by this version.
func List() []Entry { return append([]Entry(nil), entries...) }

// BuildOptions configure graph construction.
type BuildOptions struct {
	// WeightDType is the dtype weights are declared (and stored) in: F32 or BF16.
	WeightDType ir.DType
	// Has reports whether the checkpoint holds a tensor; nil means "no
	// checkpoint" (zero-weight builds), and models then follow the config.
	Has func(name string) bool
	// Taps adds per-layer hidden states as outputs ("hidden.<i>", "norm"),
	// for golden tests and debugging.
	Taps bool
}

// Model is one architecture's graph builder for one config.
type Model interface {
	// Build returns the model's graph for one step over T tokens.
	Build(opt BuildOptions) (*ir.Graph, error)
	// Ignored reports checkpoint tensors the model deliberately does not
	// load (for example a multi-token-prediction layer).
	Ignored(name string) bool
	// MaxPositions is the context limit: max_position_embeddings (of the
	// text decoder), or transformers' class default when the key is absent.
	// It is not part of the graph; the runtime applies it.
	MaxPositions() int
}

// Staged is a model whose engine runs several plans in order — Qwen3-VL:
// the vision stage once per image at prefill, then the text stage. Its
// Build is not used; the last stage becomes the engine's main plan.
type Staged interface {
	Stages(opt BuildOptions) ([]*ir.Graph, error)
	StageNames() []string
	// BindStages checks the stage graphs against a checkpoint together (a
	// tensor one stage reads is not "unexpected" for another).
	BindStages(graphs []*ir.Graph, src Source, ignored func(string) bool) error
}

// NewFunc makes a Model from a parsed config, validating what it needs.
type NewFunc func(cfg *hf.Config) (Model, error)

var archs = map[string]NewFunc{}

// Register makes an architecture buildable; it is called from init.
func Register(arch string, f NewFunc) {
	if _, dup := archs[arch]; dup {
		panic("models: architecture registered twice: " + arch)
	}
	archs[arch] = f
}

// Architectures lists the registered architectures.
func Architectures() []string {
	var s []string
	for a := range archs {
		s = append(s, a)
	}
	sort.Strings(s)
	return s
}

// New makes the Model for a config, chosen by its architectures field.
func New(cfg *hf.Config) (Model, error) {
	if len(cfg.Architectures) == 0 {
		return nil, fmt.Errorf("config.json has no \"architectures\" entry")
	}
	f, ok := archs[cfg.Architectures[0]]
	if !ok {
		return nil, fmt.Errorf("architecture %q is not supported yet (supported: %s)", cfg.Architectures[0], strings.Join(Architectures(), ", "))
	}
	m, err := f(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Architectures[0], err)
	}
	return m, nil
}
