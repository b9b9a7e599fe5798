package ir

import (
	"errors"
	"fmt"
)

// Value is one node of a Graph: an op applied to earlier values. ID is the
// value's index in Graph.Values.
type Value struct {
	ID    int
	Op    Op
	DType DType
	Shape Shape
	Args  []*Value
	Attrs Attrs
}

// Name returns the "name" attribute of inputs, weights and build-time
// concats of weights, or "" for other ops.
func (v *Value) Name() string {
	if info, ok := v.Op.Info(); !ok {
		return ""
	} else if _, ok := info.Attr("name"); !ok {
		return ""
	}
	return v.Attr().String("name")
}

// String returns "v<ID>".
func (v *Value) String() string { return fmt.Sprintf("v%d", v.ID) }

// Output is a named graph result the runtime reads after a step.
type Output struct {
	Name  string
	Value *Value
}

// CacheKind says how the runtime stores a cache.
type CacheKind uint8

// Cache kinds. Numbers are stored in engine files: append only.
const (
	// CacheKV is a paged per-token cache with two entries, K [kvHeads, headDim]
	// and V [kvHeads, vHeadDim] (standard and gated attention).
	CacheKV CacheKind = 1
	// CacheLatent is a paged per-token cache of MLA's compressed pair,
	// c_kv [rank] and k_rope [ropeDim].
	CacheLatent CacheKind = 2
	// CacheState is a fixed-size per-sequence slot, overwritten every step:
	// DeltaNet's recurrent state [heads, dk, dv] and conv state [channels, k-1].
	CacheState CacheKind = 3
)

var cacheKindNames = map[CacheKind]string{CacheKV: "kv", CacheLatent: "latent", CacheState: "state"}

func (k CacheKind) String() string {
	if s, ok := cacheKindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("cachekind(%d)", uint8(k))
}

// Paged reports whether the cache grows with the sequence (paged blocks)
// rather than holding one fixed slot per sequence.
func (k CacheKind) Paged() bool { return k == CacheKV || k == CacheLatent }

// CacheSpec declares one cache the runtime must provide: its kind, the layer
// it belongs to, its element type and the shapes of its entries (per token
// for paged kinds, per sequence for state kinds). Ops name it by index.
type CacheSpec struct {
	Kind    CacheKind
	Layer   int
	DType   DType
	Entries []Shape
}

// Graph is a model's computation for one step over T tokens.
type Graph struct {
	Name    string
	Values  []*Value
	Outputs []Output
	Caches  []CacheSpec
}

// NewValue appends a value after inferring its type. Inputs and weights
// take the declared dt and shape. Other ops take the inferred type when dt
// is DInvalid and shape is nil; otherwise the declared type must equal the
// inferred one (the parser relies on this).
func (g *Graph) NewValue(op Op, dt DType, shape Shape, args []*Value, attrs ...Attr) (*Value, error) {
	info, ok := op.Info()
	if by, retired := op.Retired(); retired {
		return nil, fmt.Errorf("op %v is retired (%v replaced it)", op, by)
	} else if !ok {
		return nil, fmt.Errorf("unknown op %v", op)
	}
	at, err := MakeAttrs(attrs...)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", op, err)
	}
	v := &Value{ID: len(g.Values), Op: op, Args: args, Attrs: at, DType: dt, Shape: shape.Clone()}
	if err := checkValue(v, info, true); err != nil {
		return nil, err
	}
	g.Values = append(g.Values, v)
	return v, nil
}

// checkValue checks arity and attributes (against the op's declarations:
// no unknown key, every type right, every required one present) and checks
// v's recorded type
// against inference (or the declared type of inputs and weights). With fill,
// a value with no recorded type (DInvalid, nil shape) takes the inferred
// one; without it (the verifier) a missing type is an error, so that
// checking never mutates the graph.
func checkValue(v *Value, info OpInfo, fill bool) error {
	if info.Args >= 0 && len(v.Args) != info.Args {
		return fmt.Errorf("%v %v: want %d args, got %d", v, info.Name, info.Args, len(v.Args))
	}
	for _, a := range v.Args {
		if a == nil {
			return fmt.Errorf("%v %v: nil arg", v, info.Name)
		}
	}
	if err := v.Attrs.check(); err != nil {
		return fmt.Errorf("%v %v: %w", v, info.Name, err)
	}
	if err := info.checkAttrs(v.Attrs); err != nil {
		return fmt.Errorf("%v %v: %w", v, info.Name, err)
	}
	if info.Infer == nil {
		if !v.DType.Valid() {
			return fmt.Errorf("%v %v %q: invalid dtype", v, info.Name, v.Name())
		}
		if err := v.Shape.validate(); err != nil {
			return fmt.Errorf("%v %v %q: %w", v, info.Name, v.Name(), err)
		}
		if v.Op == OpWeight && symOf(v.Shape) != 0 {
			return fmt.Errorf("%v weight %q: weights have static shapes, got %v", v, v.Name(), v.Shape)
		}
		return nil
	}
	dt, sh, err := info.Infer(v.Args, v.Attr())
	if err != nil {
		return fmt.Errorf("%v %v: %w", v, info.Name, err)
	}
	if fill && v.DType == DInvalid && v.Shape == nil {
		v.DType, v.Shape = dt, sh
		return nil
	}
	if v.DType != dt || !v.Shape.Equal(sh) {
		return fmt.Errorf("%v %v: recorded type %v%v, inferred %v%v", v, info.Name, v.DType, v.Shape, dt, sh)
	}
	return nil
}

// Renumber makes IDs dense again after values were removed.
func (g *Graph) Renumber() {
	for i, v := range g.Values {
		v.ID = i
	}
}

// Uses counts, for each value ID, how many args and outputs refer to it.
func (g *Graph) Uses() []int {
	uses := make([]int, len(g.Values))
	for _, v := range g.Values {
		for _, a := range v.Args {
			if a != nil && a.ID >= 0 && a.ID < len(uses) {
				uses[a.ID]++
			}
		}
	}
	for _, o := range g.Outputs {
		if o.Value != nil && o.Value.ID >= 0 && o.Value.ID < len(uses) {
			uses[o.Value.ID]++
		}
	}
	return uses
}

// Builder builds a graph with a sticky error: after the first failure every
// call returns a placeholder and Finish reports that failure, so model code
// reads like the math, without an error check per line.
type Builder struct {
	g   *Graph
	err error
}

// NewBuilder starts a graph called name.
func NewBuilder(name string) *Builder { return &Builder{g: &Graph{Name: name}} }

func (b *Builder) add(op Op, dt DType, shape Shape, args []*Value, attrs ...Attr) *Value {
	if b.err != nil {
		return &Value{ID: -1, Op: op, DType: F32, Shape: Sh(T)}
	}
	for _, a := range args {
		if a == nil || a.ID < 0 {
			b.err = fmt.Errorf("%v: argument from a failed step", op)
			return &Value{ID: -1, Op: op, DType: F32, Shape: Sh(T)}
		}
	}
	v, err := b.g.NewValue(op, dt, shape, args, attrs...)
	if err != nil {
		b.err = err
		return &Value{ID: -1, Op: op, DType: F32, Shape: Sh(T)}
	}
	return v
}

// Err returns the first error, if any.
func (b *Builder) Err() error { return b.err }

// Input declares a runtime input.
func (b *Builder) Input(name string, dt DType, shape ...Dim) *Value {
	return b.add(OpInput, dt, Shape(shape), nil, Str("name", name))
}

// Weight declares a checkpoint tensor by its checkpoint name.
func (b *Builder) Weight(name string, dt DType, shape ...Dim) *Value {
	return b.add(OpWeight, dt, Shape(shape), nil, Str("name", name))
}

// Op appends any op with inferred type.
func (b *Builder) Op(op Op, args []*Value, attrs ...Attr) *Value {
	return b.add(op, DInvalid, nil, args, attrs...)
}

// Embedding: table [V, H], ids i32[T] -> [T, H].
func (b *Builder) Embedding(table, ids *Value) *Value { return b.Op(OpEmbedding, []*Value{table, ids}) }

// RMSNorm normalises over the last dim; unitOffset selects the (1+w) form.
func (b *Builder) RMSNorm(x, w *Value, eps float64, unitOffset bool) *Value {
	attrs := []Attr{Float("eps", eps)}
	if unitOffset {
		attrs = append(attrs, Int("unit_offset", 1))
	}
	return b.Op(OpRMSNorm, []*Value{x, w}, attrs...)
}

// MatMul: x [..., K], w [N, K] -> [..., N].
func (b *Builder) MatMul(x, w *Value) *Value { return b.Op(OpMatMul, []*Value{x, w}) }

// Reshape views x with a new shape (same element count).
func (b *Builder) Reshape(x *Value, dims ...Dim) *Value {
	raw := make([]int64, len(dims))
	for i, d := range dims {
		raw[i] = int64(d)
	}
	return b.Op(OpReshape, []*Value{x}, Ints("shape", raw...))
}

// RoPEOpts configures a rotary embedding.
type RoPEOpts struct {
	Theta      float64
	RotaryDims int    // channels rotated per head (the rest pass through)
	Style      string // "neox" (rotate-half) or "interleaved" (adjacent pairs)
}

// RoPE: x [T, heads, headDim], pos i32[T] -> [T, heads, headDim].
func (b *Builder) RoPE(x, pos *Value, o RoPEOpts) *Value {
	return b.Op(OpRoPE, []*Value{x, pos}, Float("theta", o.Theta), Int("rotary_dims", int64(o.RotaryDims)), Str("style", o.Style))
}

// Cache declares a cache and returns its index.
func (b *Builder) Cache(spec CacheSpec) int {
	b.g.Caches = append(b.g.Caches, spec)
	return len(b.g.Caches) - 1
}

// Attention: q [T, Hq, D], k [T, Hkv, D], v [T, Hkv, Dv] -> [T, Hq, Dv]; causal,
// through the paged cache with index cache.
func (b *Builder) Attention(q, k, v *Value, cache int, scale float64) *Value {
	return b.Op(OpAttention, []*Value{q, k, v}, Int("cache", int64(cache)), Float("scale", scale))
}

// SiLU, Sigmoid, Mul, Add and GatherRows append the elementwise and
// selection ops of the same names.
func (b *Builder) SiLU(x *Value) *Value             { return b.Op(OpSiLU, []*Value{x}) }
func (b *Builder) Sigmoid(x *Value) *Value          { return b.Op(OpSigmoid, []*Value{x}) }
func (b *Builder) Mul(x, y *Value) *Value           { return b.Op(OpMul, []*Value{x, y}) }
func (b *Builder) Add(x, y *Value) *Value           { return b.Op(OpAdd, []*Value{x, y}) }
func (b *Builder) GatherRows(x, rows *Value) *Value { return b.Op(OpGatherRows, []*Value{x, rows}) }

// Concat joins parts along axis. Over weights only it is folded at build
// time into one engine tensor called name (for example a fused QKV weight),
// so the runtime never concatenates.
func (b *Builder) Concat(axis int, name string, parts ...*Value) *Value {
	attrs := []Attr{Int("axis", int64(axis))}
	if name != "" {
		attrs = append(attrs, Str("name", name))
	}
	return b.Op(OpConcat, parts, attrs...)
}

// Output names a result.
func (b *Builder) Output(name string, v *Value) {
	if b.err == nil && (v == nil || v.ID < 0) {
		b.err = fmt.Errorf("output %q: value from a failed step", name)
	}
	if b.err == nil {
		b.g.Outputs = append(b.g.Outputs, Output{Name: name, Value: v})
	}
}

// Finish verifies and returns the graph.
func (b *Builder) Finish() (*Graph, error) {
	if b.err != nil {
		return nil, fmt.Errorf("building %q: %w", b.g.Name, b.err)
	}
	if err := Verify(b.g); err != nil {
		return nil, err
	}
	return b.g, nil
}

// ErrVerify marks verifier failures.
var ErrVerify = errors.New("ir: invalid graph")
