package pio

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/frontends/image"
	"github.com/inference-pio/pio/models/qwen3vl"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

// DefaultMaxImageTokens is the default of Options.MaxImageTokens.
const DefaultMaxImageTokens = 4096

// vision is a Qwen3-VL engine's image path: the preprocessing options, the
// vision stage (run once per request with images, under mu) and what the
// text stage needs to place its outputs.
type vision struct {
	mu     sync.Mutex
	be     runtime.Backend
	opt    image.Options
	tok    image.TokenIDs
	side   int      // √num_position_embeddings
	hidden int      // text hidden size: the width of image_embeds and deepstack.<k>
	feats  []string // vision outputs the text stage reads: image_embeds, deepstack.0, ...
	max    int      // merged image tokens per request (the vision stage's MaxTokens)
	runs   atomic.Int64
}

// newVision opens the vision stage of a multi-stage Qwen3-VL engine; it
// returns nil, nil for a text-only engine.
func newVision(f *engine.Engine, opt Options) (*vision, error) {
	has := false
	for _, st := range f.Meta.Stages {
		has = has || st.Name == qwen3vl.StageNames[0]
	}
	if !has {
		return nil, nil
	}
	hc, err := hf.ParseConfig(f.Meta.Model.ConfigJSON)
	if err != nil {
		return nil, err
	}
	cfg, err := qwen3vl.ParseConfig(hc)
	if err != nil {
		return nil, err
	}
	if len(f.Meta.PreprocessorConfigJSON) == 0 {
		return nil, fmt.Errorf("pio: the engine has a vision stage but no preprocessor_config.json")
	}
	po, err := image.ParseOptions(f.Meta.PreprocessorConfigJSON)
	if err != nil {
		return nil, fmt.Errorf("pio: %w", err)
	}
	if po.MergeSize != cfg.Vision.MergeSize || po.PatchSize != cfg.Vision.PatchSize || po.TemporalPatchSize != cfg.Vision.TemporalPatchSize {
		return nil, fmt.Errorf("pio: preprocessor patch %d, merge %d, temporal %d disagree with the model's %d, %d, %d",
			po.PatchSize, po.MergeSize, po.TemporalPatchSize, cfg.Vision.PatchSize, cfg.Vision.MergeSize, cfg.Vision.TemporalPatchSize)
	}
	side := int(math.Round(math.Sqrt(float64(cfg.Vision.NumPositionEmbeddings))))
	if side*side != cfg.Vision.NumPositionEmbeddings {
		return nil, fmt.Errorf("pio: num_position_embeddings %d is not a square", cfg.Vision.NumPositionEmbeddings)
	}
	v := &vision{opt: po, side: side, hidden: cfg.Text.Hidden, max: opt.MaxImageTokens,
		tok: image.TokenIDs{Image: cfg.ImageToken, VisionStart: cfg.VisionStart, VisionEnd: cfg.VisionEnd}}
	if v.max == 0 {
		v.max = DefaultMaxImageTokens
	}
	v.feats = append(v.feats, qwen3vl.OutImage)
	for k := range cfg.Vision.DeepStack {
		v.feats = append(v.feats, qwen3vl.OutDeep+strconv.Itoa(k))
	}
	for _, name := range append([]string{qwen3vl.InMRoPE, qwen3vl.InMask}, v.feats...) {
		found := false
		for _, in := range f.Meta.Plan.Inputs {
			found = found || in.Name == name
		}
		if !found {
			return nil, fmt.Errorf("pio: the text plan has no input %q", name)
		}
	}
	size := BackendSize{Stage: qwen3vl.StageNames[0], MaxTokens: v.max, MaxSeqs: 1, NumBlocks: 1, Threads: opt.Threads}
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
	v.mu.Lock()
	defer v.mu.Unlock()
	v.runs.Add(1)
	err := v.be.Step(&runtime.Batch{
		Tokens: make([]int32, vi.Tokens), Positions: pos, SeqOfToken: make([]int32, vi.Tokens),
		Seqs: []runtime.SeqView{{}}, LogitRows: []int32{int32(vi.Tokens - 1)},
		Inputs: map[string]runtime.Input{
			qwen3vl.InPixels: {F32: vi.Pixels}, qwen3vl.InPosIdx: {I32: vi.PosIdx}, qwen3vl.InPosW: {F32: vi.PosW},
			qwen3vl.InRoPEPos: {I32: vi.RoPEPos}, qwen3vl.InSegments: {I32: vi.Segments},
		},
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
	pos, mask := dst[qwen3vl.InMRoPE], dst[qwen3vl.InMask]
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
	dst[qwen3vl.InMRoPE], dst[qwen3vl.InMask] = pos, mask
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
