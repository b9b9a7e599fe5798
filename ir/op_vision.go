package ir

import "fmt"

// The vision family (op numbers 128–159): Qwen3-VL's vision tower and the
// multimodal parts of its text decoder.
//
// The vision stage runs with T = the number of merged (LLM) tokens of the
// step's images: patches arrive as [T, G, ...] with G = merge² = 4 patches
// of one 2×2 block per row, so the patch merger is the reshape
// [T, 4, C] -> [T, 4·C] and no second symbolic dimension is needed. The
// text stage receives the merged features and DeepStack features as
// token-aligned [T, H] tensors (rows of non-image tokens are ignored) plus
// an i32[T] image mask.
const (
	OpLayerNorm        Op = 128 // y = (x − mean)/sqrt(var + eps)·w + b over the last dim (biased variance)
	OpGELU             Op = 129 // y = x·Φ(x) (approximate="erf") or its tanh approximation ("tanh")
	OpSegmentAttention Op = 130 // softmax(q·kᵀ·scale)·v over the rows of the same segment (bidirectional, no cache)
	OpMRoPE            Op = 131 // rotate-half RoPE whose frequency slots take their position from one of A axes (2-D RoPE, MRoPE)
	OpWeightedRows     Op = 132 // y[r] = Σ_k w[r,k]·table[idx[r,k]] (bilinear position-embedding interpolation)
	OpAddRows          Op = 133 // y[t] = h[t] + f[t] where mask[t] ≠ 0, else h[t] (DeepStack injection)
	OpSetRows          Op = 134 // y[t] = f[t] where mask[t] ≠ 0, else h[t] (image embeddings replace <|image_pad|>)
	OpBiasAdd          Op = 135 // y[..., n] = x[..., n] + b[n]
)

func init() {
	defineOp(OpLayerNorm, OpInfo{Name: "layer_norm", Args: 3, Attrs: []AttrSpec{specEps}, Infer: inferLayerNorm, Pure: true,
		Comment: "(x−mean)/sqrt(var+eps)·w + b over the last dim"})
	defineOp(OpGELU, OpInfo{Name: "gelu", Args: 1, Attrs: []AttrSpec{req("approximate", TString)}, Infer: inferGELU, Pure: true,
		Comment: "x·Φ(x), approximate=\"erf\" (exact) or \"tanh\""})
	defineOp(OpSegmentAttention, OpInfo{Name: "segment_attention", Args: 4, Attrs: []AttrSpec{specScale}, Infer: inferSegmentAttention, Pure: true,
		Comment: "bidirectional attention within each segment: q, k, v [T, (G,) H, D], seg i32[T] (equal ids contiguous)"})
	defineOp(OpMRoPE, OpInfo{Name: "mrope", Args: 2,
		Attrs: []AttrSpec{req("theta", TFloat), req("freq_dim", TInt), req("sections", TInts), req("layout", TString)}, Infer: inferMRoPE, Pure: true,
		Comment: "rotate-half RoPE on the first 2·Σsections channels; slot i uses inv_freq[i mod freq_dim/2] and the position of its section's axis"})
	defineOp(OpWeightedRows, OpInfo{Name: "weighted_rows", Args: 3, Infer: inferWeightedRows, Pure: true,
		Comment: "y[r] = Σ_k w[r,k]·table[idx[r,k]], summed in k order"})
	defineOp(OpAddRows, OpInfo{Name: "add_rows", Args: 3, Infer: inferMaskRows, Pure: true,
		Comment: "y[t] = mask[t] ? h[t] + f[t] : h[t]"})
	defineOp(OpSetRows, OpInfo{Name: "set_rows", Args: 3, Infer: inferMaskRows, Pure: true,
		Comment: "y[t] = mask[t] ? f[t] : h[t]"})
	defineOp(OpBiasAdd, OpInfo{Name: "bias_add", Args: 2, Infer: inferBiasAdd, Pure: true,
		Comment: "y = x + b broadcast over the last dim"})
}

func inferLayerNorm(a []*Value, at AttrReader) (DType, Shape, error) {
	x := a[0]
	if !isFloat(x) || len(x.Shape) == 0 || x.Shape.Last().Symbolic() {
		return 0, nil, fmt.Errorf("x must be float with a static last dim, got %v%v", x.DType, x.Shape)
	}
	for _, w := range a[1:] {
		if !isFloat(w) || len(w.Shape) != 1 || w.Shape[0] != x.Shape.Last() {
			return 0, nil, fmt.Errorf("weight and bias must be float [%v], got %v%v", x.Shape.Last(), w.DType, w.Shape)
		}
	}
	if eps := at.Float("eps"); !(eps > 0) {
		return 0, nil, fmt.Errorf("eps must be > 0")
	}
	return F32, x.Shape.Clone(), nil
}

func inferGELU(a []*Value, at AttrReader) (DType, Shape, error) {
	if s := at.String("approximate"); s != "erf" && s != "tanh" {
		return 0, nil, fmt.Errorf("approximate must be \"erf\" or \"tanh\", got %q", s)
	}
	return inferUnary(a, at)
}

// isPatchHeads reports whether s is [T, H, D] or [T, G, H, D] with static
// positive dims after T.
func isPatchHeads(s Shape) bool {
	if (len(s) != 3 && len(s) != 4) || s[0] != T {
		return false
	}
	for _, d := range s[1:] {
		if d.Symbolic() || d <= 0 {
			return false
		}
	}
	return true
}

func inferSegmentAttention(a []*Value, at AttrReader) (DType, Shape, error) {
	q, k, v, seg := a[0], a[1], a[2], a[3]
	for _, x := range a[:3] {
		if !isFloat(x) || !isPatchHeads(x.Shape) {
			return 0, nil, fmt.Errorf("q, k, v must be float [T, H, D] or [T, G, H, D], got %v%v", x.DType, x.Shape)
		}
	}
	if !q.Shape.Equal(k.Shape) || !q.Shape.Equal(v.Shape) {
		return 0, nil, fmt.Errorf("q %v, k %v and v %v must have one shape", q.Shape, k.Shape, v.Shape)
	}
	if seg.DType != I32 || !seg.Shape.Equal(Sh(T)) {
		return 0, nil, fmt.Errorf("segments must be i32[T], got %v%v", seg.DType, seg.Shape)
	}
	if sc := at.Float("scale"); !(sc > 0) {
		return 0, nil, fmt.Errorf("scale must be > 0")
	}
	return F32, q.Shape.Clone(), nil
}

func inferMRoPE(a []*Value, at AttrReader) (DType, Shape, error) {
	x, pos := a[0], a[1]
	if !isFloat(x) || !isPatchHeads(x.Shape) {
		return 0, nil, fmt.Errorf("x must be float [T, H, D] or [T, G, H, D], got %v%v", x.DType, x.Shape)
	}
	secs := at.Ints("sections")
	if len(secs) < 1 || len(secs) > 4 {
		return 0, nil, fmt.Errorf("sections %v: want 1 to 4 axes", secs)
	}
	slots := int64(0)
	for _, s := range secs {
		if s < 0 {
			return 0, nil, fmt.Errorf("sections %v must be >= 0", secs)
		}
		slots += s
	}
	hd := int64(x.Shape.Last())
	if slots <= 0 || 2*slots > hd {
		return 0, nil, fmt.Errorf("sections %v: 2·%d rotary channels do not fit head dim %d", secs, slots, hd)
	}
	want := append(x.Shape[:len(x.Shape)-2].Clone(), Dim(len(secs)))
	if pos.DType != I32 || !pos.Shape.Equal(want) {
		return 0, nil, fmt.Errorf("positions must be i32%v, got %v%v", want, pos.DType, pos.Shape)
	}
	if fd := at.Int("freq_dim"); fd <= 0 || fd%2 != 0 {
		return 0, nil, fmt.Errorf("freq_dim %d must be even and > 0", fd)
	}
	if th := at.Float("theta"); !(th > 0) {
		return 0, nil, fmt.Errorf("theta must be > 0")
	}
	switch at.String("layout") {
	case "chunked":
	case "interleaved":
		// axis a ≥ 1 takes slots a, a+3, …, below 3·sections[a]; axis 0 the rest
		if len(secs) != 3 {
			return 0, nil, fmt.Errorf("interleaved layout needs 3 sections (t, h, w), got %v", secs)
		}
		for i, s := range secs[1:] {
			if 3*s > slots {
				return 0, nil, fmt.Errorf("interleaved sections %v: axis %d's slots run past slot %d", secs, i+1, slots)
			}
		}
	default:
		return 0, nil, fmt.Errorf("layout must be \"chunked\" or \"interleaved\", got %q", at.String("layout"))
	}
	return F32, x.Shape.Clone(), nil
}

func inferWeightedRows(a []*Value, _ AttrReader) (DType, Shape, error) {
	table, idx, w := a[0], a[1], a[2]
	if !isFloat(table) || len(table.Shape) != 2 || table.Shape[0].Symbolic() || table.Shape[1].Symbolic() {
		return 0, nil, fmt.Errorf("table must be a float static [N, D], got %v%v", table.DType, table.Shape)
	}
	if idx.DType != I32 || len(idx.Shape) < 2 || idx.Shape[0] != T || idx.Shape.Last().Symbolic() {
		return 0, nil, fmt.Errorf("idx must be i32[T, ..., K], got %v%v", idx.DType, idx.Shape)
	}
	if !isFloat(w) || !w.Shape.Equal(idx.Shape) {
		return 0, nil, fmt.Errorf("weights must be float %v like idx, got %v%v", idx.Shape, w.DType, w.Shape)
	}
	out := idx.Shape.Clone()
	out[len(out)-1] = table.Shape[1]
	return F32, out, nil
}

func inferMaskRows(a []*Value, _ AttrReader) (DType, Shape, error) {
	h, f, mask := a[0], a[1], a[2]
	if !isFloat(h) || !isTokenRows(h.Shape) {
		return 0, nil, fmt.Errorf("h must be float [T, H], got %v%v", h.DType, h.Shape)
	}
	if !isFloat(f) || !f.Shape.Equal(h.Shape) {
		return 0, nil, fmt.Errorf("features must be float %v, got %v%v", h.Shape, f.DType, f.Shape)
	}
	if mask.DType != I32 || !mask.Shape.Equal(Sh(T)) {
		return 0, nil, fmt.Errorf("mask must be i32[T], got %v%v", mask.DType, mask.Shape)
	}
	return F32, h.Shape.Clone(), nil
}

func inferBiasAdd(a []*Value, _ AttrReader) (DType, Shape, error) {
	x, b := a[0], a[1]
	if !isFloat(x) || len(x.Shape) == 0 || x.Shape.Last().Symbolic() {
		return 0, nil, fmt.Errorf("x must be float with a static last dim, got %v%v", x.DType, x.Shape)
	}
	if !isFloat(b) || len(b.Shape) != 1 || b.Shape[0] != x.Shape.Last() {
		return 0, nil, fmt.Errorf("bias must be float [%v], got %v%v", x.Shape.Last(), b.DType, b.Shape)
	}
	return F32, x.Shape.Clone(), nil
}

// MRoPEOpts configures an mrope op.
type MRoPEOpts struct {
	Theta    float64
	FreqDim  int     // inv_freq[j] = θ^(−2j/FreqDim), j < FreqDim/2
	Sections []int64 // frequency slots per position axis
	Layout   string  // "chunked" (axis a owns a contiguous run of slots) or "interleaved" (Qwen3-VL text)
}

// LayerNorm: x [..., D], w, b [D] -> [..., D].
func (b *Builder) LayerNorm(x, w, bias *Value, eps float64) *Value {
	return b.Op(OpLayerNorm, []*Value{x, w, bias}, Float("eps", eps))
}

// GELU: approximate is "erf" or "tanh".
func (b *Builder) GELU(x *Value, approximate string) *Value {
	return b.Op(OpGELU, []*Value{x}, Str("approximate", approximate))
}

// SegmentAttention: q, k, v [T, (G,) H, D], seg i32[T] -> [T, (G,) H, D].
func (b *Builder) SegmentAttention(q, k, v, seg *Value, scale float64) *Value {
	return b.Op(OpSegmentAttention, []*Value{q, k, v, seg}, Float("scale", scale))
}

// MRoPE: x [T, (G,) H, D], pos i32[T, (G,) A] -> [T, (G,) H, D].
func (b *Builder) MRoPE(x, pos *Value, o MRoPEOpts) *Value {
	return b.Op(OpMRoPE, []*Value{x, pos}, Float("theta", o.Theta), Int("freq_dim", int64(o.FreqDim)),
		Ints("sections", o.Sections...), Str("layout", o.Layout))
}

// WeightedRows: table [N, D], idx i32[T, ..., K], w [T, ..., K] -> [T, ..., D].
func (b *Builder) WeightedRows(table, idx, w *Value) *Value {
	return b.Op(OpWeightedRows, []*Value{table, idx, w})
}

// AddRows: h, f [T, H], mask i32[T] -> [T, H].
func (b *Builder) AddRows(h, f, mask *Value) *Value { return b.Op(OpAddRows, []*Value{h, f, mask}) }

// SetRows: h, f [T, H], mask i32[T] -> [T, H].
func (b *Builder) SetRows(h, f, mask *Value) *Value { return b.Op(OpSetRows, []*Value{h, f, mask}) }

// BiasAdd: x [..., N], bias [N] -> [..., N].
func (b *Builder) BiasAdd(x, bias *Value) *Value { return b.Op(OpBiasAdd, []*Value{x, bias}) }
