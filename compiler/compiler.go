// Package compiler is the driver behind `pioc build`: it finds a checkpoint,
// builds the model's graph, binds its weights, runs the pass pipeline, lowers
// the graph to a plan and writes the engine file. Each stage lives in its own
// package (frontends/hf, models, passes, runtime/engine); this one only
// sequences them and reports progress.
package compiler

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	_ "github.com/inference-pio/pio/models/all" // every architecture
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/engine"
)

// Version is written into every engine as its producer.
const Version = "pioc 0.1.0"

// Options configure one build.
type Options struct {
	Source   string   // a model name from the registry, or a checkpoint directory
	Output   string   // engine path
	DType    ir.DType // weight storage: ir.F32 or ir.BF16 (default BF16)
	KVDType  ir.DType // paged cache (KV, MLA latent) storage: ir.F32, ir.BF16, or ir.DInvalid = auto (AutoKVDType)
	Check    bool     // verify the graph before and after every pass
	DumpIR   string   // directory for per-pass graph dumps
	DumpOnly string   // dump after this pass only
	Taps     bool     // keep per-layer hidden states as engine outputs (tests, debugging)
	NoFuse   bool     // skip the fusion passes (an unfused engine, for comparison)
	// SkipPasses leaves the named passes out of the pipeline.
	SkipPasses []string
	// Quant, if set (int8, int4 or fp8), stores matmul weights group-wise
	// quantized, QuantGroup (default DefaultQuantGroup) weights per scale.
	Quant      string
	QuantGroup int
	QuantHead  string // lm_head format: int8, int4, fp8 or none; "" = DefaultHeadFormat(Quant)
	// Target is "cpu" (the default) or "cuda": cuda also generates the CUDA
	// kernels and compiles them with nvcc (NVCC, or found on the system).
	Target, NVCC string
	// Log receives one line per stage; Progress the weight-writing progress.
	Log      func(format string, args ...any)
	Progress func(done, total int64)
}

// Result describes a finished build.
type Result struct {
	Checkpoint string
	Model      string
	Plan       *ir.Plan
	Bytes      int64
}

// ResolveSource turns a model name or directory into a checkpoint directory.
// A name is looked up in the registry and then in the Hugging Face cache;
// nothing is downloaded.
func ResolveSource(src string) (dir, name string, err error) {
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		return src, "", nil
	}
	e, ok := models.Find(src)
	if !ok {
		var names []string
		for _, e := range models.List() {
			names = append(names, e.Name)
		}
		return "", "", fmt.Errorf("%q is neither a checkpoint directory nor a known model (known: %s)", src, strings.Join(names, ", "))
	}
	dir, err = hf.FindSnapshot(e.HFRepo)
	if err != nil {
		return "", "", fmt.Errorf("model %s: %w", e.Name, err)
	}
	return dir, e.Name, nil
}

// Build runs the whole compilation.
func Build(opt Options) (*Result, error) {
	logf := opt.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if opt.DType == ir.DInvalid {
		opt.DType = ir.BF16
	}
	if opt.DType != ir.F32 && opt.DType != ir.BF16 {
		return nil, fmt.Errorf("weight dtype %v is not supported (use f32 or bf16)", opt.DType)
	}
	if err := resolveKVDType(&opt); err != nil {
		return nil, err
	}
	if err := checkTarget(&opt); err != nil {
		return nil, err
	}
	dir, name, err := ResolveSource(opt.Source)
	if err != nil {
		return nil, err
	}
	logf("checkpoint %s", dir)
	ck, err := hf.OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	m, err := models.New(ck.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	has := func(n string) bool { _, ok := ck.Tensor(n); return ok }
	bo := models.BuildOptions{WeightDType: opt.DType, Has: has, Taps: opt.Taps}
	graphs, stageNames, err := buildGraphs(m, bo, models.CheckpointSource(ck))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	setKVDType(graphs, opt.KVDType)
	logf("kv cache %v", opt.KVDType)
	plans := make([]*ir.Plan, len(graphs))
	for i, g := range graphs {
		gopt := opt
		if len(graphs) > 1 {
			logf("stage %s", stageNames[i])
			if opt.DumpIR != "" {
				gopt.DumpIR = filepath.Join(opt.DumpIR, stageNames[i])
			}
		}
		if plans[i], err = compileGraph(g, gopt, logf); err != nil {
			return nil, err
		}
	}
	g, plan := graphs[len(graphs)-1], plans[len(plans)-1]

	kernels, err := buildKernels(plans, stageNames, opt, logf)
	if err != nil {
		return nil, err
	}
	meta := &engine.Metadata{
		Kernels:  kernels[len(plans)-1],
		Producer: Version,
		Model:    engine.ModelInfo{Name: name, Architecture: ck.Config.Architectures[0], ConfigJSON: ck.Config.Raw},
		Plan:     plan,
	}
	if e, ok := models.Find(name); ok {
		meta.Model.HFRepo = e.HFRepo
	} else {
		meta.Model.Name = filepath.Base(filepath.Clean(dir))
	}
	for _, aux := range []struct {
		file string
		dst  *[]byte
	}{{"tokenizer.json", &meta.TokenizerJSON}, {"tokenizer_config.json", &meta.TokenizerConfigJSON}, {"generation_config.json", &meta.GenerationConfigJSON}} {
		b, err := ck.ReadFile(aux.file)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		*aux.dst = b
	}
	if b, err := ck.ReadFile("chat_template.jinja"); err == nil {
		meta.ChatTemplate = string(b)
	}
	if b, err := ck.ReadFile("preprocessor_config.json"); err == nil {
		meta.PreprocessorConfigJSON = b
	}
	for i := range plans[:len(plans)-1] {
		meta.Stages = append(meta.Stages, engine.Stage{Name: stageNames[i], Plan: plans[i], Kernels: kernels[i]})
	}

	weights, err := unionWeights(plans)
	if err != nil {
		return nil, err
	}
	specs := make([]engine.WeightSpec, len(weights))
	for i, w := range weights {
		shape := make([]int64, len(w.Shape))
		for j, d := range w.Shape {
			shape[j] = int64(d)
		}
		specs[i] = engine.WeightSpec{Name: w.Name, DType: w.DType, Shape: shape}
	}
	fill := func(i int, dst []byte) error { return materializeQuant(weights[i], ck.Tensor, dst) }
	logf("writing %s", opt.Output)
	if err := engine.Create(opt.Output, meta, specs, fill, engine.WriteOptions{Progress: opt.Progress}); err != nil {
		return nil, err
	}
	st, err := os.Stat(opt.Output)
	if err != nil {
		return nil, err
	}
	return &Result{Checkpoint: dir, Model: g.Name, Plan: plan, Bytes: st.Size()}, nil
}

// buildGraphs builds and binds a model's graphs: one, or one per stage for
// a models.Staged model (the last stage is the engine's main plan).
func buildGraphs(m models.Model, bo models.BuildOptions, src models.Source) ([]*ir.Graph, []string, error) {
	if st, ok := m.(models.Staged); ok {
		graphs, err := st.Stages(bo)
		if err != nil {
			return nil, nil, err
		}
		if err := st.BindStages(graphs, src, m.Ignored); err != nil {
			return nil, nil, err
		}
		return graphs, st.StageNames(), nil
	}
	g, err := m.Build(bo)
	if err != nil {
		return nil, nil, err
	}
	if err := models.Bind(g, src, m.Ignored); err != nil {
		return nil, nil, err
	}
	return []*ir.Graph{g}, []string{g.Name}, nil
}

// compileGraph quantizes (when asked), runs the pass pipeline and lowers one
// graph to a plan.
func compileGraph(g *ir.Graph, opt Options, logf func(string, ...any)) (*ir.Plan, error) {
	logf("graph %s: %d values, %d weights", g.Name, len(g.Values), countOp(g, ir.OpWeight))
	var recipes map[string]*ir.Recipe
	if opt.Quant != "" {
		if opt.QuantGroup == 0 {
			opt.QuantGroup = DefaultQuantGroup
		}
		if opt.QuantHead == "" {
			opt.QuantHead = DefaultHeadFormat(opt.Quant)
		}
		var nq, kept int
		var err error
		if recipes, nq, kept, err = quantizeGraph(g, opt.Quant, opt.QuantHead, opt.QuantGroup); err != nil {
			return nil, err
		}
		logf("quant %s (lm_head %s), group %d: %d matmul weights quantized, %d kept (K not a multiple of the group)", opt.Quant, opt.QuantHead, opt.QuantGroup, nq, kept)
	}
	if err := passes.Run(g, passes.Options{Check: opt.Check, DumpDir: opt.DumpIR, DumpOnly: opt.DumpOnly, NoFuse: opt.NoFuse, Skip: opt.SkipPasses}); err != nil {
		return nil, err
	}
	plan, err := passes.Lower(g)
	if err != nil {
		return nil, err
	}
	attachRecipes(plan, recipes)
	sumT, sumF := passes.Intermediates(plan)
	logf("plan: %d steps, %d buffers, arena %d B/token + %d B (all intermediates: %d B/token + %d B)",
		len(plan.Steps), len(plan.Buffers), plan.ArenaPerT, plan.ArenaFixed, sumT, sumF)
	return plan, nil
}

// unionWeights lists every weight the plans read, once, by name; two plans
// naming one tensor must agree on its type.
func unionWeights(plans []*ir.Plan) ([]ir.PlanTensor, error) {
	var out []ir.PlanTensor
	at := map[string]int{}
	for _, p := range plans {
		for _, w := range p.Weights {
			if i, ok := at[w.Name]; ok {
				if out[i].DType != w.DType || !out[i].Shape.Equal(w.Shape) {
					return nil, fmt.Errorf("weight %q is %v%v in one stage and %v%v in another", w.Name, out[i].DType, out[i].Shape, w.DType, w.Shape)
				}
				continue
			}
			at[w.Name] = len(out)
			out = append(out, w)
		}
	}
	return out, nil
}

func countOp(g *ir.Graph, op ir.Op) int {
	n := 0
	for _, v := range g.Values {
		if v.Op == op {
			n++
		}
	}
	return n
}
