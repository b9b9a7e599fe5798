package ir

import (
	"fmt"
	"strings"
	"testing"
)

// opEnv is a fresh builder with the operands the inference cases share.
type opEnv struct {
	b                 *Builder
	tokens, pos, rows *Value // i32[T], i32[T], i32[S]
	x, xs, xi         *Value // f32[T, 64], f32[S, 64], i32[T, 64]
	embed, norm, w    *Value // bf16[512, 64], bf16[64], bf16[128, 64]
	q, k, v           *Value // f32[T, 4, 16], f32[T, 2, 16], f32[T, 2, 8]
	cache             int
}

func newOpEnv() *opEnv {
	b := NewBuilder("ops")
	e := &opEnv{b: b}
	e.tokens = b.Input("tokens", I32, T)
	e.pos = b.Input("positions", I32, T)
	e.rows = b.Input("rows", I32, S)
	e.x = b.Input("x", F32, T, 64)
	e.xs = b.Input("xs", F32, S, 64)
	e.xi = b.Input("xi", I32, T, 64)
	e.embed = b.Weight("embed", BF16, 512, 64)
	e.norm = b.Weight("norm", BF16, 64)
	e.w = b.Weight("w", BF16, 128, 64)
	e.q = b.Input("q", F32, T, 4, 16)
	e.k = b.Input("k", F32, T, 2, 16)
	e.v = b.Input("v", F32, T, 2, 8)
	e.cache = b.Cache(CacheSpec{Kind: CacheKV, DType: F32, Entries: []Shape{Sh(2, 16), Sh(2, 8)}})
	if err := b.Err(); err != nil {
		panic(err)
	}
	return e
}

func (e *opEnv) in(name string, dt DType, dims ...Dim) *Value { return e.b.Input(name, dt, dims...) }
func (e *opEnv) wt(name string, dims ...Dim) *Value           { return e.b.Weight(name, BF16, dims...) }
func vals(v ...*Value) []*Value                               { return v }

var neox = RoPEOpts{Theta: 1e6, RotaryDims: 16, Style: "neox"}

// familyInferenceCases holds the inference cases of op families defined in
// other files (op_<family>.go); their tests append to it from init.
var familyInferenceCases []struct {
	name    string
	build   func(e *opEnv) *Value
	want    string
	wantErr string
}

// TestInference builds one value per case and checks its inferred type, or
// that the builder rejects it with an error containing wantErr.
func TestInference(t *testing.T) {
	tests := []struct {
		name    string
		build   func(e *opEnv) *Value
		want    string // "f32[T, 64]"
		wantErr string
	}{
		// input, weight
		{"input", func(e *opEnv) *Value { return e.in("a", F16, T, 4) }, "f16[T, 4]", ""},
		{"input/scalar", func(e *opEnv) *Value { return e.in("a", F32) }, "f32[]", ""},
		{"input/S", func(e *opEnv) *Value { return e.in("a", I64, S) }, "i64[S]", ""},
		{"input/two symbolic", func(e *opEnv) *Value { return e.in("a", F32, T, S) }, "", "more than one symbolic"},
		{"input/negative dim", func(e *opEnv) *Value { return e.in("a", F32, -3) }, "", "negative dimension"},
		{"input/overflow", func(e *opEnv) *Value { return e.in("a", F32, 1<<40, 1<<40) }, "", "overflows"},
		{"input/invalid dtype", func(e *opEnv) *Value { return e.in("a", DInvalid, T) }, "", "invalid dtype"},
		{"input/unknown dtype", func(e *opEnv) *Value { return e.in("a", DType(99), T) }, "", "invalid dtype"},
		{"input/no name", func(e *opEnv) *Value { return e.b.Op(OpInput, nil) }, "", `missing attribute "name"`},
		{"weight", func(e *opEnv) *Value { return e.wt("a", 4, 8) }, "bf16[4, 8]", ""},
		{"weight/symbolic", func(e *opEnv) *Value { return e.wt("a", T, 8) }, "", "static shapes"},
		{"weight/args", func(e *opEnv) *Value {
			return e.b.add(OpWeight, F32, Sh(4), vals(e.x), Str("name", "a"))
		}, "", "want 0 args, got 1"},

		// embedding
		{"embedding", func(e *opEnv) *Value { return e.b.Embedding(e.embed, e.tokens) }, "f32[T, 64]", ""},
		{"embedding/S ids", func(e *opEnv) *Value { return e.b.Embedding(e.embed, e.rows) }, "f32[S, 64]", ""},
		{"embedding/float ids", func(e *opEnv) *Value { return e.b.Embedding(e.embed, e.x) }, "", "ids must be i32"},
		{"embedding/int table", func(e *opEnv) *Value {
			return e.b.Embedding(e.b.Weight("t", I32, 8, 4), e.tokens)
		}, "", "table must be float"},
		{"embedding/symbolic table", func(e *opEnv) *Value { return e.b.Embedding(e.x, e.tokens) }, "", "static [vocab, hidden]"},
		{"embedding/arity", func(e *opEnv) *Value { return e.b.Op(OpEmbedding, vals(e.embed)) }, "", "want 2 args, got 1"},

		// rms_norm
		{"rms_norm", func(e *opEnv) *Value { return e.b.RMSNorm(e.x, e.norm, 1e-6, false) }, "f32[T, 64]", ""},
		{"rms_norm/unit offset", func(e *opEnv) *Value { return e.b.RMSNorm(e.x, e.norm, 1e-6, true) }, "f32[T, 64]", ""},
		{"rms_norm/per head", func(e *opEnv) *Value { return e.b.RMSNorm(e.q, e.wt("qn", 16), 1e-6, false) }, "f32[T, 4, 16]", ""},
		{"rms_norm/int eps", func(e *opEnv) *Value {
			return e.b.Op(OpRMSNorm, vals(e.x, e.norm), Int("eps", 1))
		}, "f32[T, 64]", ""},
		{"rms_norm/weight mismatch", func(e *opEnv) *Value { return e.b.RMSNorm(e.x, e.wt("n", 32), 1e-6, false) }, "", "does not match the last dim"},
		{"rms_norm/weight rank", func(e *opEnv) *Value { return e.b.RMSNorm(e.x, e.wt("n", 1, 64), 1e-6, false) }, "", "does not match the last dim"},
		{"rms_norm/symbolic last dim", func(e *opEnv) *Value { return e.b.RMSNorm(e.in("a", F32, T), e.in("b", F32, T), 1e-6, false) }, "", "does not match"},
		{"rms_norm/scalar", func(e *opEnv) *Value { return e.b.RMSNorm(e.in("a", F32), e.wt("n", 0), 1e-6, false) }, "", "does not match"},
		{"rms_norm/zero eps", func(e *opEnv) *Value { return e.b.RMSNorm(e.x, e.norm, 0, false) }, "", "eps must be > 0"},
		{"rms_norm/nan eps", func(e *opEnv) *Value { return e.b.RMSNorm(e.x, e.norm, nan(), false) }, "", "eps must be > 0"},
		{"rms_norm/no eps", func(e *opEnv) *Value { return e.b.Op(OpRMSNorm, vals(e.x, e.norm)) }, "", `missing attribute "eps"`},
		{"rms_norm/bad unit offset", func(e *opEnv) *Value {
			return e.b.Op(OpRMSNorm, vals(e.x, e.norm), Float("eps", 1e-6), Int("unit_offset", 2))
		}, "", "unit_offset must be 0 or 1"},
		{"rms_norm/int x", func(e *opEnv) *Value { return e.b.RMSNorm(e.xi, e.norm, 1e-6, false) }, "", "operands must be float"},

		// matmul
		{"matmul", func(e *opEnv) *Value { return e.b.MatMul(e.x, e.w) }, "f32[T, 128]", ""},
		{"matmul/S rows", func(e *opEnv) *Value { return e.b.MatMul(e.xs, e.w) }, "f32[S, 128]", ""},
		{"matmul/3-D x", func(e *opEnv) *Value { return e.b.MatMul(e.q, e.wt("a", 8, 16)) }, "f32[T, 4, 8]", ""},
		{"matmul/mismatched K", func(e *opEnv) *Value { return e.b.MatMul(e.x, e.wt("a", 128, 32)) }, "", "disagree on K"},
		{"matmul/scalar x", func(e *opEnv) *Value { return e.b.MatMul(e.in("a", F32), e.w) }, "", "disagree on K"},
		{"matmul/symbolic weight", func(e *opEnv) *Value { return e.b.MatMul(e.x, e.x) }, "", "static [N, K]"},
		{"matmul/weight rank", func(e *opEnv) *Value { return e.b.MatMul(e.x, e.wt("a", 2, 128, 64)) }, "", "static [N, K]"},
		{"matmul/int x", func(e *opEnv) *Value { return e.b.MatMul(e.xi, e.w) }, "", "operands must be float"},
		{"matmul/arity", func(e *opEnv) *Value { return e.b.Op(OpMatMul, vals(e.x)) }, "", "want 2 args, got 1"},

		// reshape
		{"reshape/split heads", func(e *opEnv) *Value { return e.b.Reshape(e.x, T, 4, 16) }, "f32[T, 4, 16]", ""},
		{"reshape/merge heads", func(e *opEnv) *Value { return e.b.Reshape(e.q, T, 64) }, "f32[T, 64]", ""},
		{"reshape/static", func(e *opEnv) *Value { return e.b.Reshape(e.embed, 64, 512) }, "bf16[64, 512]", ""},
		{"reshape/keeps dtype", func(e *opEnv) *Value { return e.b.Reshape(e.xi, T, 2, 32) }, "i32[T, 2, 32]", ""},
		{"reshape/S", func(e *opEnv) *Value { return e.b.Reshape(e.xs, S, 8, 8) }, "f32[S, 8, 8]", ""},
		{"reshape/element count", func(e *opEnv) *Value { return e.b.Reshape(e.x, T, 5, 16) }, "", "cannot reshape"},
		{"reshape/static count", func(e *opEnv) *Value { return e.b.Reshape(e.embed, 64, 64) }, "", "cannot reshape"},
		{"reshape/T to S", func(e *opEnv) *Value { return e.b.Reshape(e.x, S, 64) }, "", "cannot reshape"},
		{"reshape/static to T", func(e *opEnv) *Value { return e.b.Reshape(e.norm, T, 64) }, "", "cannot reshape"},
		{"reshape/two symbolic", func(e *opEnv) *Value { return e.b.Reshape(e.x, T, S, 64) }, "", "more than one symbolic"},
		{"reshape/negative", func(e *opEnv) *Value { return e.b.Reshape(e.x, T, -3, 64) }, "", "negative dimension"},
		{"reshape/no shape", func(e *opEnv) *Value { return e.b.Op(OpReshape, vals(e.x)) }, "", `missing attribute "shape"`},
		{"reshape/shape not ints", func(e *opEnv) *Value {
			return e.b.Op(OpReshape, vals(e.norm), Str("shape", "[64]"))
		}, "", "integer list"},

		// rope
		{"rope", func(e *opEnv) *Value { return e.b.RoPE(e.q, e.pos, neox) }, "f32[T, 4, 16]", ""},
		{"rope/partial interleaved", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.pos, RoPEOpts{Theta: 1e4, RotaryDims: 8, Style: "interleaved"})
		}, "f32[T, 4, 16]", ""},
		{"rope/odd rotary dims", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.pos, RoPEOpts{Theta: 1e4, RotaryDims: 15, Style: "neox"})
		}, "", "rotary_dims 15 must be even"},
		{"rope/zero rotary dims", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.pos, RoPEOpts{Theta: 1e4, Style: "neox"})
		}, "", "rotary_dims 0"},
		{"rope/rotary dims too big", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.pos, RoPEOpts{Theta: 1e4, RotaryDims: 32, Style: "neox"})
		}, "", "rotary_dims 32"},
		{"rope/bad style", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.pos, RoPEOpts{Theta: 1e4, RotaryDims: 16, Style: "gptj"})
		}, "", `got "gptj"`},
		{"rope/zero theta", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.pos, RoPEOpts{RotaryDims: 16, Style: "neox"})
		}, "", "theta must be > 0"},
		{"rope/no style", func(e *opEnv) *Value {
			return e.b.Op(OpRoPE, vals(e.q, e.pos), Float("theta", 1e4), Int("rotary_dims", 16))
		}, "", `missing attribute "style"`},
		{"rope/float positions", func(e *opEnv) *Value {
			return e.b.RoPE(e.q, e.in("p", F32, T), neox)
		}, "", "positions must be i32[T]"},
		{"rope/S positions", func(e *opEnv) *Value { return e.b.RoPE(e.q, e.rows, neox) }, "", "positions must be i32[T]"},
		{"rope/rank 2", func(e *opEnv) *Value { return e.b.RoPE(e.x, e.pos, neox) }, "", "[T, heads, headDim]"},
		{"rope/S rows", func(e *opEnv) *Value { return e.b.RoPE(e.in("a", F32, S, 4, 16), e.pos, neox) }, "", "[T, heads, headDim]"},
		{"rope/int x", func(e *opEnv) *Value { return e.b.RoPE(e.in("a", I32, T, 4, 16), e.pos, neox) }, "", "must be float"},

		// attention
		{"attention/gqa", func(e *opEnv) *Value { return e.b.Attention(e.q, e.k, e.v, e.cache, 0.25) }, "f32[T, 4, 8]", ""},
		{"attention/mha", func(e *opEnv) *Value {
			return e.b.Attention(e.q, e.in("k4", F32, T, 4, 16), e.in("v4", F32, T, 4, 16), e.cache, 0.25)
		}, "f32[T, 4, 16]", ""},
		{"attention/heads not dividing", func(e *opEnv) *Value {
			return e.b.Attention(e.q, e.in("k3", F32, T, 3, 16), e.in("v3", F32, T, 3, 8), e.cache, 0.25)
		}, "", "must be a multiple of kv heads"},
		{"attention/zero kv heads", func(e *opEnv) *Value {
			return e.b.Attention(e.q, e.in("k0", F32, T, 0, 16), e.in("v0", F32, T, 0, 8), e.cache, 0.25)
		}, "", "must be a multiple of kv heads"},
		{"attention/v heads", func(e *opEnv) *Value {
			return e.b.Attention(e.q, e.k, e.in("v1", F32, T, 1, 8), e.cache, 0.25)
		}, "", "= v heads"},
		{"attention/head dim", func(e *opEnv) *Value {
			return e.b.Attention(e.q, e.in("k8", F32, T, 2, 8), e.v, e.cache, 0.25)
		}, "", "disagree on head dim"},
		{"attention/rank", func(e *opEnv) *Value { return e.b.Attention(e.x, e.k, e.v, e.cache, 0.25) }, "", "[T, heads, dim]"},
		{"attention/int q", func(e *opEnv) *Value {
			return e.b.Attention(e.in("qi", I32, T, 4, 16), e.k, e.v, e.cache, 0.25)
		}, "", "must be float"},
		{"attention/zero scale", func(e *opEnv) *Value { return e.b.Attention(e.q, e.k, e.v, e.cache, 0) }, "", "scale must be > 0"},
		{"attention/negative cache", func(e *opEnv) *Value { return e.b.Attention(e.q, e.k, e.v, -1, 0.25) }, "", "cache index must be >= 0"},
		{"attention/float cache", func(e *opEnv) *Value {
			return e.b.Op(OpAttention, vals(e.q, e.k, e.v), Float("cache", 0), Float("scale", 0.25))
		}, "", "attention: attribute cache=0.0 is a float, want an integer"},
		{"attention/no scale", func(e *opEnv) *Value {
			return e.b.Op(OpAttention, vals(e.q, e.k, e.v), Int("cache", 0))
		}, "", `missing attribute "scale"`},
		{"attention/arity", func(e *opEnv) *Value {
			return e.b.Op(OpAttention, vals(e.q, e.k), Int("cache", 0), Float("scale", 1))
		}, "", "want 3 args, got 2"},

		// elementwise
		{"silu", func(e *opEnv) *Value { return e.b.SiLU(e.x) }, "f32[T, 64]", ""},
		{"silu/int", func(e *opEnv) *Value { return e.b.SiLU(e.xi) }, "", "operand must be float"},
		{"silu/arity", func(e *opEnv) *Value { return e.b.Op(OpSiLU, vals(e.x, e.x)) }, "", "want 1 args, got 2"},
		{"sigmoid", func(e *opEnv) *Value { return e.b.Sigmoid(e.q) }, "f32[T, 4, 16]", ""},
		{"sigmoid/int", func(e *opEnv) *Value { return e.b.Sigmoid(e.tokens) }, "", "operand must be float"},
		{"concat/weights", func(e *opEnv) *Value { return e.b.Concat(0, "wcat", e.w, e.embed) }, "bf16[640, 64]", ""},
		{"concat/activations", func(e *opEnv) *Value { return e.b.Concat(1, "", e.q, e.q) }, "f32[T, 8, 16]", ""},
		{"concat/symbolic axis", func(e *opEnv) *Value { return e.b.Concat(0, "", e.x, e.x) }, "", "not a static axis"},
		{"concat/mismatch", func(e *opEnv) *Value { return e.b.Concat(1, "", e.k, e.v) }, "", "differ outside axis"},
		{"concat/dtype", func(e *opEnv) *Value { return e.b.Concat(0, "", e.w, e.x) }, "", "share a float dtype"},
		{"mul", func(e *opEnv) *Value { return e.b.Mul(e.x, e.x) }, "f32[T, 64]", ""},
		{"mul/bf16", func(e *opEnv) *Value { return e.b.Mul(e.norm, e.norm) }, "f32[64]", ""},
		{"mul/shapes", func(e *opEnv) *Value { return e.b.Mul(e.x, e.xs) }, "", "shapes differ"},
		{"mul/int", func(e *opEnv) *Value { return e.b.Mul(e.xi, e.x) }, "", "operands must be float"},
		{"add", func(e *opEnv) *Value { return e.b.Add(e.x, e.x) }, "f32[T, 64]", ""},
		{"add/shapes", func(e *opEnv) *Value { return e.b.Add(e.x, e.b.Reshape(e.x, T, 4, 16)) }, "", "shapes differ"},
		{"add/int", func(e *opEnv) *Value { return e.b.Add(e.x, e.xi) }, "", "operands must be float"},
		{"add/arity", func(e *opEnv) *Value { return e.b.Op(OpAdd, vals(e.x, e.x, e.x)) }, "", "want 2 args, got 3"},

		// gather_rows
		{"gather_rows", func(e *opEnv) *Value { return e.b.GatherRows(e.x, e.rows) }, "f32[S, 64]", ""},
		{"gather_rows/T rows", func(e *opEnv) *Value { return e.b.GatherRows(e.q, e.pos) }, "f32[T, 4, 16]", ""},
		{"gather_rows/keeps dtype", func(e *opEnv) *Value { return e.b.GatherRows(e.xi, e.rows) }, "i32[S, 64]", ""},
		{"gather_rows/float rows", func(e *opEnv) *Value { return e.b.GatherRows(e.x, e.in("r", F32, S)) }, "", "rows must be i32"},
		{"gather_rows/static rows", func(e *opEnv) *Value { return e.b.GatherRows(e.x, e.in("r", I32, 4)) }, "", "rows must be i32"},
		{"gather_rows/S x", func(e *opEnv) *Value { return e.b.GatherRows(e.xs, e.rows) }, "", "x must be [T, ...]"},
		{"gather_rows/scalar x", func(e *opEnv) *Value { return e.b.GatherRows(e.in("a", F32), e.rows) }, "", "x must be [T, ...]"},

		// the table itself and attributes
		{"unknown op", func(e *opEnv) *Value { return e.b.Op(Op(999), vals(e.x)) }, "", "unknown op"},
		{"invalid op", func(e *opEnv) *Value { return e.b.Op(OpInvalid, nil) }, "", "unknown op"},
		{"duplicate attribute", func(e *opEnv) *Value {
			return e.b.Op(OpSiLU, vals(e.x), Int("a", 1), Int("a", 2))
		}, "", `duplicate attribute "a"`},
		{"attribute key", func(e *opEnv) *Value { return e.b.Op(OpSiLU, vals(e.x), Int("a b", 1)) }, "", "not an identifier"},
		{"attribute kind", func(e *opEnv) *Value { return e.b.Op(OpSiLU, vals(e.x), Attr{Key: "a", Kind: 9}) }, "", "unknown kind"},
		{"unknown attributes", func(e *opEnv) *Value {
			return e.b.Op(OpSiLU, vals(e.x), Str("note", "kept"), Ints("l", 1, 2))
		}, "", "silu: unknown attribute l=[1, 2] (silu takes none)"},
		{"failed arg", func(e *opEnv) *Value { return e.b.SiLU(&Value{ID: -1}) }, "", "failed step"},
		{"nil arg", func(e *opEnv) *Value { return e.b.SiLU(nil) }, "", "failed step"},
	}
	tests = append(tests, familyInferenceCases...)
	covered := map[Op]bool{}
	for _, tt := range append(tests, extraInferenceCases...) {
		t.Run(tt.name, func(t *testing.T) {
			e := newOpEnv()
			v := tt.build(e)
			err := e.b.Err()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				if v.ID != -1 {
					t.Errorf("failed step returned %v, want a placeholder with ID -1", v)
				}
				if _, ferr := e.b.Finish(); ferr == nil || !strings.Contains(ferr.Error(), tt.wantErr) {
					t.Errorf("Finish: got %v, want the sticky error", ferr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got := fmt.Sprintf("%v%v", v.DType, v.Shape); got != tt.want {
				t.Errorf("type: got %s, want %s", got, tt.want)
			}
			covered[v.Op] = true
			e.b.Output("out", v)
			if _, err := e.b.Finish(); err != nil {
				t.Errorf("Finish: %v", err)
			}
		})
	}
	for _, op := range Ops() {
		if !covered[op] {
			t.Errorf("op %v has no passing inference case", op)
		}
	}
}

func nan() float64 {
	var z float64
	return z / z
}

// TestNewValueDeclaredType checks that a declared type on a computed op must
// equal the inferred one (the parser relies on this) and that a missing one
// is filled in.
func TestNewValueDeclaredType(t *testing.T) {
	g := &Graph{Name: "g"}
	x, err := g.NewValue(OpInput, F32, Sh(T, 8), nil, Str("name", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.NewValue(OpSiLU, F32, Sh(T, 8), vals(x)); err != nil {
		t.Errorf("matching declared type: %v", err)
	}
	if _, err := g.NewValue(OpSiLU, F32, Sh(T, 4), vals(x)); err == nil || !strings.Contains(err.Error(), "recorded type f32[T, 4], inferred f32[T, 8]") {
		t.Errorf("mismatched declared type: got %v", err)
	}
	v, err := g.NewValue(OpSiLU, DInvalid, nil, vals(x))
	if err != nil || v.DType != F32 || !v.Shape.Equal(Sh(T, 8)) || v.ID != 2 {
		t.Errorf("inferred: got %v %v%v, %v", v, v.DType, v.Shape, err)
	}
	if _, err := g.NewValue(OpSiLU, DInvalid, nil, []*Value{nil}); err == nil || !strings.Contains(err.Error(), "nil arg") {
		t.Errorf("nil arg: got %v", err)
	}
}

func TestOpTable(t *testing.T) {
	seen := map[string]bool{}
	for _, op := range Ops() {
		info, ok := op.Info()
		if !ok || info.Name == "" || info.Comment == "" {
			t.Errorf("op %d: incomplete table entry %+v", op, info)
		}
		if seen[info.Name] {
			t.Errorf("op %d: duplicate name %q", op, info.Name)
		}
		seen[info.Name] = true
		if got, err := ParseOp(info.Name); err != nil || got != op {
			t.Errorf("ParseOp(%q) = %v, %v; want %v", info.Name, got, err, op)
		}
		if (info.Infer == nil) != (op == OpInput || op == OpWeight) {
			t.Errorf("op %v: only input and weight may lack an inference rule", op)
		}
	}
	if _, err := ParseOp("invalid"); err == nil {
		t.Errorf(`ParseOp("invalid") succeeded`)
	}
	if got := Op(999).String(); got != "op(999)" {
		t.Errorf("Op(999).String() = %q", got)
	}
	// Engine files store these numbers: they must never change.
	fixed := map[Op]string{1: "input", 2: "weight", 3: "embedding", 4: "rms_norm", 5: "matmul", 6: "reshape",
		7: "rope", 8: "attention", 9: "silu", 10: "mul", 11: "add", 12: "gather_rows", 13: "sigmoid", 14: "concat"}
	for op, name := range fixed {
		if op.String() != name {
			t.Errorf("op %d is %q, want %q: op numbers are append-only", op, op, name)
		}
	}
}
