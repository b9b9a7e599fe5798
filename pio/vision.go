package pio

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/frontends/image"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models/qwen3vl"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

// The inputs pio feeds a vision-language engine, by the names its plans
// declare them under: a binding like the runtime's "tokens", "positions"
// and "logit_rows" (runtime.Backend), checked against the plans at Load.
// The rest comes from the engine's plans: the vision stage is the stage
// whose plan takes pixel_values, and every input of that plan must be one
// of visionInputs; the stage's outputs that the text plan takes as inputs,
// by name, are the image features (Qwen3-VL: image_embeds and
// deepstack.<k>), each f32[T, hidden], zero at text rows.
const (
	inPixels = "pixel_values"    // vision stage: f32[T, merge², C·Tp·P·P]
	inMRoPE  = "mrope_positions" // text plan: i32[T, 3]
	inMask   = "image_mask"      // text plan: i32[T], 1 at image tokens
)

// visionInputs are the vision stage's inputs, each taken from one
// request's preprocessed images.
var visionInputs = map[string]struct {
	dtype ir.DType
	get   func(*image.VisionInputs) runtime.Input
}{
	inPixels:     {ir.F32, func(vi *image.VisionInputs) runtime.Input { return runtime.Input{F32: vi.Pixels} }},
	"pos_idx":    {ir.I32, func(vi *image.VisionInputs) runtime.Input { return runtime.Input{I32: vi.PosIdx} }},  // i32[T, merge², 4]
	"pos_w":      {ir.F32, func(vi *image.VisionInputs) runtime.Input { return runtime.Input{F32: vi.PosW} }},    // f32[T, merge², 4]
	"vision_pos": {ir.I32, func(vi *image.VisionInputs) runtime.Input { return runtime.Input{I32: vi.RoPEPos} }}, // i32[T, merge², 2]
	"segments":   {ir.I32, func(vi *image.VisionInputs) runtime.Input { return runtime.Input{I32: vi.Segments} }},
}

// vision is a vision-language engine's image path: the preprocessing
// options, the vision stage (run once per request with images, under mu)
// and what the text plan needs to place its outputs.
type vision struct {
	mu     sync.Mutex
	be     runtime.Backend
	inputs []string // the vision stage's inputs (visionInputs)
	opt    image.Options
	tok    image.TokenIDs
	side   int      // √num_position_embeddings
	hidden int      // text hidden size: the width of the image features
	feats  []string // the image features, in the stage's output order
	max    int      // merged image tokens per request (the vision stage's MaxTokens)
	runs   atomic.Int64
}

// newVision opens the vision stage of a multi-stage engine (Qwen3-VL's);
// it returns nil, nil for a single-plan engine.
func newVision(f *engine.Engine, opt Options) (*vision, error) {
	if len(f.Meta.Stages) == 0 {
		return nil, nil
	}
	st, err := visionStage(f.Meta.Stages)
	if err != nil {
		return nil, err
	}
	v := &vision{max: opt.MaxImageTokens}
	for _, in := range st.Plan.Inputs {
		v.inputs = append(v.inputs, in.Name)
	}
	if v.feats, v.hidden, err = imageFeatures(st, f.Meta.Plan); err != nil {
		return nil, err
	}
	hc, err := hf.ParseConfig(f.Meta.Model.ConfigJSON)
	if err != nil {
		return nil, err
	}
	cfg, err := qwen3vl.ParseConfig(hc) // the token ids and the patch geometry
	if err != nil {
		return nil, err
	}
	if len(f.Meta.PreprocessorConfigJSON) == 0 {
		return nil, fmt.Errorf("pio: the engine has a vision stage but no preprocessor_config.json")
	}
	if v.opt, err = image.ParseOptions(f.Meta.PreprocessorConfigJSON); err != nil {
		return nil, fmt.Errorf("pio: %w", err)
	}
	if po := v.opt; po.MergeSize != cfg.Vision.MergeSize || po.PatchSize != cfg.Vision.PatchSize || po.TemporalPatchSize != cfg.Vision.TemporalPatchSize {
		return nil, fmt.Errorf("pio: preprocessor patch %d, merge %d, temporal %d disagree with the model's %d, %d, %d",
			po.PatchSize, po.MergeSize, po.TemporalPatchSize, cfg.Vision.PatchSize, cfg.Vision.MergeSize, cfg.Vision.TemporalPatchSize)
	}
	v.side = int(math.Round(math.Sqrt(float64(cfg.Vision.NumPositionEmbeddings))))
	if v.side*v.side != cfg.Vision.NumPositionEmbeddings {
		return nil, fmt.Errorf("pio: num_position_embeddings %d is not a square", cfg.Vision.NumPositionEmbeddings)
	}
	v.tok = image.TokenIDs{Image: cfg.ImageToken, VisionStart: cfg.VisionStart, VisionEnd: cfg.VisionEnd}
	size := BackendSize{Stage: st.Name, MaxTokens: v.max, MaxSeqs: 1, NumBlocks: 1, Threads: opt.Threads}
	if opt.Backend != nil {
		v.be, err = opt.Backend(f, size)
	} else {
		v.be, err = cpu.StageFromEngine(f, size.Stage, cpu.Options{MaxTokens: size.MaxTokens, MaxSeqs: size.MaxSeqs, NumBlocks: size.NumBlocks, Threads: size.Threads})
	}
	if err != nil {
		return nil, fmt.Errorf("pio: %s stage: %w", size.Stage, err)
	}
	return v, nil
}

// visionStage returns the engine's vision stage, the one stage it may
// have, after checking that pio can feed every input of its plan.
func visionStage(stages []engine.Stage) (engine.Stage, error) {
	st := stages[0]
	if len(stages) > 1 || !slices.ContainsFunc(st.Plan.Inputs, func(in ir.PlanTensor) bool { return in.Name == inPixels }) {
		var names []string
		for _, s := range stages {
			names = append(names, strconv.Quote(s.Name))
		}
		return st, fmt.Errorf("pio: the engine's stages %s are not one vision stage (a plan that takes %s)", strings.Join(names, ", "), inPixels)
	}
	for _, in := range st.Plan.Inputs {
		b, ok := visionInputs[in.Name]
		if !ok || in.DType != b.dtype {
			return st, fmt.Errorf("pio: %s stage: input %s %s is none of the inputs pio computes from images", st.Name, in.Name, in.DType)
		}
	}
	return st, nil
}

// imageFeatures returns the outputs of the vision stage st that the text
// plan takes as inputs, in output order, and their width, after checking
// that the text plan also takes the image positions and mask.
func imageFeatures(st engine.Stage, text *ir.Plan) (feats []string, hidden int, err error) {
	input := func(name string) (ir.PlanTensor, bool) {
		i := slices.IndexFunc(text.Inputs, func(in ir.PlanTensor) bool { return in.Name == name })
		if i < 0 {
			return ir.PlanTensor{}, false
		}
		return text.Inputs[i], true
	}
	for _, name := range []string{inMRoPE, inMask} {
		if in, ok := input(name); !ok || in.DType != ir.I32 {
			return nil, 0, fmt.Errorf("pio: the text plan has no input %q (i32)", name)
		}
	}
	for _, o := range st.Plan.Outputs {
		in, ok := input(o.Name)
		if !ok {
			continue // not for the text plan (a debugging tap)
		}
		if in.DType != ir.F32 || len(in.Shape) != 2 || in.Shape[0] != ir.T || in.Shape[1] <= 0 || (hidden > 0 && int(in.Shape[1]) != hidden) {
			return nil, 0, fmt.Errorf("pio: text plan input %s %s %v is not an image feature (f32[T, hidden], one hidden size for all)", in.Name, in.DType, in.Shape)
		}
		feats, hidden = append(feats, o.Name), int(in.Shape[1])
	}
	if len(feats) == 0 {
		return nil, 0, fmt.Errorf("pio: no output of the %s stage is an input of the text plan", st.Name)
	}
	return feats, hidden, nil
}

func (v *vision) close() {
	if v != nil {
		v.be.Close()
	}
}

// prepare lays out a prompt whose k-th <|image_pad|> stands for images[k]
// (decoded and preprocessed here, on the caller's goroutine) and returns
// the request's step inputs, whose first image rows run the vision stage.
func (v *vision) prepare(prompt []int32, images [][]byte) (*vlInputs, error) {
	pr, err := image.Prepare(images, prompt, v.tok, v.opt, v.side)
	if err != nil {
		return nil, fmt.Errorf("pio: %w: %w", ErrInvalid, err)
	}
	if pr.Vision != nil && pr.Vision.Tokens > v.max {
		return nil, fmt.Errorf("pio: %w: the images need %d image tokens, the engine takes %d a request (Options.MaxImageTokens)", ErrInvalid, pr.Vision.Tokens, v.max)
	}
	in := &vlInputs{vis: v, pending: pr.Vision, lay: pr.Layout, hidden: v.hidden, names: v.feats, zero: make([]float32, v.hidden)}
	in.row = make([]int32, len(pr.Layout.Tokens))
	n := int32(0)
	for i, m := range pr.Layout.ImageMask {
		in.row[i] = -1
		if m != 0 {
			in.row[i] = n
			n++
		}
	}
	return in, nil
}

// run runs the vision stage over one request's images and returns its
// outputs by v.feats, each [image tokens, hidden].
func (v *vision) run(vi *image.VisionInputs) ([][]float32, error) {
	pos := make([]int32, vi.Tokens)
	for i := range pos {
		pos[i] = int32(i)
	}
	in := make(map[string]runtime.Input, len(v.inputs))
	for _, name := range v.inputs {
		in[name] = visionInputs[name].get(vi)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.runs.Add(1)
	err := v.be.Step(&runtime.Batch{
		Tokens: make([]int32, vi.Tokens), Positions: pos, SeqOfToken: make([]int32, vi.Tokens),
		Seqs: []runtime.SeqView{{}}, LogitRows: []int32{int32(vi.Tokens - 1)},
		Inputs: in,
	})
	if err != nil {
		return nil, fmt.Errorf("pio: vision stage: %w", err)
	}
	var out [][]float32
	for _, name := range v.feats {
		f, shape, err := v.be.Output(name)
		if err != nil {
			return nil, fmt.Errorf("pio: vision stage: %w", err)
		}
		if len(shape) != 2 || shape[0] != vi.Tokens || shape[1] != v.hidden {
			return nil, fmt.Errorf("pio: vision output %s: shape %v, want [%d %d]", name, shape, vi.Tokens, v.hidden)
		}
		out = append(out, append([]float32(nil), f...))
	}
	return out, nil
}

// vlInputs are one request's text-stage inputs (scheduler.SeqInputs):
// MRoPE positions and image mask from the layout, the image features at
// the image tokens and zeros elsewhere; generated positions q take
// q + rope_delta on every axis.
type vlInputs struct {
	vis     *vision
	pending *image.VisionInputs // the vision stage's inputs until it has run
	lay     *image.Layout
	hidden  int
	names   []string    // image_embeds, deepstack.<k>
	feats   [][]float32 // by names: [image tokens, hidden]; nil without images
	row     []int32     // by prompt position: the image token's feature row, or -1
	zero    []float32
}

// AppendInputs implements scheduler.SeqInputs. The first step that
// computes an image token runs the vision stage (on the scheduler's
// goroutine, once per request): a prompt whose image tokens all come from
// the prefix cache never runs it.
func (in *vlInputs) AppendInputs(dst map[string]runtime.Input, from, n int) error {
	if in.pending != nil && slices.ContainsFunc(in.row[min(from, len(in.row)):min(from+n, len(in.row))], func(r int32) bool { return r >= 0 }) {
		f, err := in.vis.run(in.pending)
		if err != nil {
			return err
		}
		in.feats, in.pending = f, nil
	}
	pos, mask := dst[inMRoPE], dst[inMask]
	for i := from; i < from+n; i++ {
		if i < len(in.lay.Tokens) {
			pos.I32 = append(pos.I32, in.lay.Positions[3*i:3*i+3]...)
			mask.I32 = append(mask.I32, in.lay.ImageMask[i])
		} else {
			p := int32(i) + in.lay.RopeDelta
			pos.I32 = append(pos.I32, p, p, p)
			mask.I32 = append(mask.I32, 0)
		}
	}
	dst[inMRoPE], dst[inMask] = pos, mask
	H := in.hidden
	for k, name := range in.names {
		v := dst[name]
		for i := from; i < from+n; i++ {
			if i < len(in.row) && in.row[i] >= 0 && in.feats != nil {
				r := int(in.row[i])
				v.F32 = append(v.F32, in.feats[k][r*H:(r+1)*H]...)
			} else {
				v.F32 = append(v.F32, in.zero...)
			}
		}
		dst[name] = v
	}
	return nil
}
