package ir

import (
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// buildQwen3Layer builds one Qwen3 decoder layer between the embedding and
// the logits, the shape of every Qwen3 graph.
func buildQwen3Layer(t testing.TB) *Graph {
	t.Helper()
	const (
		vocab, hidden, ffn      = 512, 64, 128
		heads, kvHeads, headDim = 4, 2, 16
		eps                     = 1e-6
	)
	b := NewBuilder("qwen3")
	tokens := b.Input("tokens", I32, T)   // [T]
	pos := b.Input("positions", I32, T)   // [T]
	rows := b.Input("logit_rows", I32, S) // [S]: each sequence's last token
	w := func(name string, dims ...Dim) *Value { return b.Weight(name, BF16, dims...) }
	embed := w("model.embed_tokens.weight", vocab, hidden)
	const p = "model.layers.0."
	inNorm := w(p+"input_layernorm.weight", hidden)
	wq := w(p+"self_attn.q_proj.weight", heads*headDim, hidden)
	wk := w(p+"self_attn.k_proj.weight", kvHeads*headDim, hidden)
	wv := w(p+"self_attn.v_proj.weight", kvHeads*headDim, hidden)
	qNorm := w(p+"self_attn.q_norm.weight", headDim)
	kNorm := w(p+"self_attn.k_norm.weight", headDim)
	wo := w(p+"self_attn.o_proj.weight", hidden, heads*headDim)
	postNorm := w(p+"post_attention_layernorm.weight", hidden)
	gate := w(p+"mlp.gate_proj.weight", ffn, hidden)
	up := w(p+"mlp.up_proj.weight", ffn, hidden)
	down := w(p+"mlp.down_proj.weight", hidden, ffn)
	lmHead := w("lm_head.weight", vocab, hidden)
	cache := b.Cache(CacheSpec{Kind: CacheKV, Layer: 0, DType: F32,
		Entries: []Shape{Sh(kvHeads, headDim), Sh(kvHeads, headDim)}})

	x := b.Embedding(embed, tokens) // [T, hidden]
	h := b.RMSNorm(x, inNorm, eps, false)
	q := b.Reshape(b.MatMul(h, wq), T, heads, headDim)   // [T, heads, headDim]
	k := b.Reshape(b.MatMul(h, wk), T, kvHeads, headDim) // [T, kvHeads, headDim]
	v := b.Reshape(b.MatMul(h, wv), T, kvHeads, headDim)
	q = b.RMSNorm(q, qNorm, eps, false)
	k = b.RMSNorm(k, kNorm, eps, false)
	rope := RoPEOpts{Theta: 1e6, RotaryDims: headDim, Style: "neox"}
	q, k = b.RoPE(q, pos, rope), b.RoPE(k, pos, rope)
	o := b.Attention(q, k, v, cache, 0.25)                     // [T, heads, headDim]
	x = b.Add(x, b.MatMul(b.Reshape(o, T, heads*headDim), wo)) // [T, hidden]
	h = b.RMSNorm(x, postNorm, eps, false)
	m := b.Mul(b.SiLU(b.MatMul(h, gate)), b.MatMul(h, up)) // [T, ffn]
	x = b.Add(x, b.MatMul(m, down))
	last := b.GatherRows(x, rows)              // [S, hidden]
	b.Output("logits", b.MatMul(last, lmHead)) // [S, vocab]
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./ir -update to create it)", err)
	}
	if diff := cmp.Diff(got, string(want)); diff != "" {
		t.Errorf("%s mismatch (-got +want):\n%s", path, diff)
	}
}

func TestPrintGolden(t *testing.T) {
	g := buildQwen3Layer(t)
	text := Print(g)
	golden(t, "qwen3_layer.txt", text)
	if g.String() != text {
		t.Errorf("Graph.String differs from Print")
	}
	g2, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse(Print(g)): %v", err)
	}
	if diff := cmp.Diff(Print(g2), text); diff != "" {
		t.Errorf("Print(Parse(Print(g))) (-got +want):\n%s", diff)
	}
	// The golden file itself parses and prints back unchanged.
	want, err := os.ReadFile(filepath.Join("testdata", "qwen3_layer.txt"))
	if err != nil {
		t.Fatal(err)
	}
	g3, err := Parse(string(want))
	if err != nil {
		t.Fatalf("Parse(golden): %v", err)
	}
	if diff := cmp.Diff(Print(g3), string(want)); diff != "" {
		t.Errorf("golden does not round-trip (-got +want):\n%s", diff)
	}
}

// TestRoundTripStructure compares the parsed graph with the built one field
// by field, not only through Print.
func TestRoundTripStructure(t *testing.T) {
	g := buildQwen3Layer(t)
	got, err := Parse(Print(g))
	if err != nil {
		t.Fatal(err)
	}
	// Compare args by ID so that cmp does not walk the whole graph per arg.
	argIDs := cmp.Transformer("argIDs", func(args []*Value) []int {
		ids := make([]int, len(args))
		for i, a := range args {
			ids[i] = a.ID
		}
		return ids
	})
	if diff := cmp.Diff(got, g, argIDs); diff != "" {
		t.Errorf("Parse(Print(g)) (-got +want):\n%s", diff)
	}
}

// opAttrsTest is a test-only op (an identity) that takes one attribute of
// each kind, so that the text form's tests can print and parse any value:
// the schema of a real op rejects keys it does not declare.
const opAttrsTest Op = 65000

func init() {
	defineOp(opAttrsTest, OpInfo{Name: "attrs_test", Args: 1, Infer: inferUnary, Pure: true, Comment: "test only: y = x",
		Attrs: []AttrSpec{optFloat("f", 0), optFloat("nan", 0), optInt("i", 0), optInt("j", 0), optInts("e"), optInts("l"),
			optString("s", ""), optString("t", "")}})
	familyInferenceCases = append(familyInferenceCases, struct {
		name    string
		build   func(e *opEnv) *Value
		want    string
		wantErr string
	}{"attrs_test", func(e *opEnv) *Value { return e.b.Op(opAttrsTest, vals(e.x), Float("f", 1)) }, "f32[T, 64]", ""})
}

func TestPrintAttrs(t *testing.T) {
	floats := []float64{1e-6, 0.1, 1, -1, 0, math.Copysign(0, -1), 1e21, 123456789012345678, 5e-324,
		math.MaxFloat64, math.SmallestNonzeroFloat64, math.Inf(1), math.Inf(-1), 1.0 / 3, 2.5e-8}
	b := NewBuilder("attrs")
	x := b.Input("x", F32, T, 8)
	var outs []*Value
	for _, f := range floats {
		outs = append(outs, b.Op(opAttrsTest, vals(x), Float("f", f)))
	}
	outs = append(outs,
		b.Op(opAttrsTest, vals(x), Int("i", math.MinInt64), Int("j", math.MaxInt64), Ints("e"), Ints("l", -1, 0, 7)),
		b.Op(opAttrsTest, vals(x), Str("s", "tab\there \"quoted\" #not-a-comment\n\x00\xff é"), Str("t", "")),
		b.Op(opAttrsTest, vals(x), Float("nan", math.NaN())),
	)
	for i, v := range outs {
		b.Output(strings.Repeat("o", i+1), v)
	}
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	text := Print(g)
	for _, want := range []string{
		`{f=1e-06}`, `{f=1.0}`, `{f=-1.0}`, `{f=0.0}`, `{f=-0.0}`, `{f=1e+21}`, `{f=5e-324}`, `{f=inf}`, `{f=-inf}`,
		`{f=1.2345678901234568e+17}`, `{e=[], i=-9223372036854775808, j=9223372036854775807, l=[-1, 0, 7]}`,
		`{s="tab\there \"quoted\" #not-a-comment\n\x00\xff é", t=""}`, `{nan=nan}`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Print lacks %s:\n%s", want, text)
		}
	}
	g2, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Print(g2), text); diff != "" {
		t.Errorf("round trip (-got +want):\n%s", diff)
	}
	for i, f := range floats {
		got := g2.Values[i+1].Attr().Float("f")
		if math.Float64bits(got) != math.Float64bits(f) {
			t.Errorf("float %v came back as %v", f, got)
		}
	}
	if got := g2.Values[len(floats)+2].Attr().String("s"); got != outs[len(floats)+1].Attr().String("s") {
		t.Errorf("string came back as %q", got)
	}
}

// TestPrintInvalid checks that Print shows what it can of a broken graph
// instead of panicking: dumps are most needed when a pass broke the graph.
func TestPrintInvalid(t *testing.T) {
	g := buildQwen3Layer(t)
	g.Values[5].Args = []*Value{nil}
	g.Values[6] = nil
	g.Outputs = append(g.Outputs, Output{Name: "x"})
	g.Caches = append(g.Caches, CacheSpec{Kind: 9, DType: 77})
	text := Print(g)
	for _, want := range []string{"v5 = weight(<nil>)", "  <nil>\n", `output "x" = <nil>`, "cache 1 = cachekind(9) layer=0 dtype(77) []"} {
		if !strings.Contains(text, want) {
			t.Errorf("Print lacks %q:\n%s", want, text)
		}
	}
}

// TestPrintSparseIDs: Print labels values by ID, and Parse resolves labels
// to values by position, so a graph with gaps in its IDs reads back dense.
func TestPrintSparseIDs(t *testing.T) {
	text := `graph "g" {
  v0 = input() {name="x"} : f32[T, 8]
  v7 = silu(v0) : f32[T, 8]
  v3 = add(v7, v0) : f32[T, 8]
  output "y" = v3
}
`
	g, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := `graph "g" {
  v0 = input() {name="x"} : f32[T, 8]
  v1 = silu(v0) : f32[T, 8]
  v2 = add(v1, v0) : f32[T, 8]
  output "y" = v2
}
`
	if diff := cmp.Diff(Print(g), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}
