package ir

import (
	"errors"
	"strings"
	"testing"
)

func TestVerifyAcceptsBuiltGraph(t *testing.T) {
	g := buildQwen3Layer(t)
	before := Print(g)
	if err := Verify(g); err != nil {
		t.Fatal(err)
	}
	if Print(g) != before {
		t.Errorf("Verify changed the graph")
	}
}

// TestVerifyRejects breaks a valid graph in one way per case.
func TestVerifyRejects(t *testing.T) {
	// Value IDs in the Qwen3 layer (see testdata/qwen3_layer.txt).
	const (
		vTokens = 0
		vEmbedW = 3
		vLMHead = 15
		vEmbed  = 16
		vNorm   = 17
		vQ      = 18
		vRoPEQ  = 26
		vAttn   = 28
		vOProj  = 30
		vLogits = 40
	)
	other := buildQwen3Layer(t)
	tests := []struct {
		name   string
		mutate func(g *Graph)
		want   string
	}{
		{"args out of order", func(g *Graph) {
			g.Values[vEmbed], g.Values[vNorm] = g.Values[vNorm], g.Values[vEmbed]
			g.Renumber()
		}, "v16 rms_norm: arg is not an earlier value of this graph"},
		{"arg from a later value", func(g *Graph) { g.Values[vNorm].Args[0] = g.Values[vQ] }, "v17 rms_norm: arg is not an earlier value"},
		{"self arg", func(g *Graph) { g.Values[vNorm].Args[0] = g.Values[vNorm] }, "v17 rms_norm: arg is not an earlier value"},
		{"arg from another graph", func(g *Graph) { g.Values[vNorm].Args[0] = other.Values[vEmbed] }, "v17 rms_norm: arg is not an earlier value"},
		{"nil arg", func(g *Graph) { g.Values[vNorm].Args[0] = nil }, "v17 rms_norm: arg is not an earlier value"},
		{"arity", func(g *Graph) { g.Values[vNorm].Args = g.Values[vNorm].Args[:1] }, "v17 rms_norm: want 2 args, got 1"},
		{"nil value", func(g *Graph) { g.Values[vQ] = nil }, "value 18 is nil"},
		{"sparse IDs", func(g *Graph) { g.Values[vQ].ID = 99 }, "value at index 18 has ID 99"},
		{"unknown op", func(g *Graph) { g.Values[vQ].Op = 999 }, "v18: unknown op op(999)"},
		{"duplicate weight names", func(g *Graph) {
			g.Values[vLMHead].Attrs = Attrs{Str("name", "model.embed_tokens.weight")}
		}, `v15: weight "model.embed_tokens.weight" already declared by v3`},
		{"duplicate input names", func(g *Graph) {
			g.Values[vTokens+1].Attrs = Attrs{Str("name", "tokens")}
		}, `v1: input "tokens" already declared by v0`},
		{"empty weight name", func(g *Graph) { g.Values[vEmbedW].Attrs = Attrs{Str("name", "")} }, "v3 weight: empty name"},
		{"weight without name", func(g *Graph) { g.Values[vEmbedW].Attrs = nil }, `v3 weight: missing attribute "name"`},
		{"duplicate outputs", func(g *Graph) {
			g.Outputs = append(g.Outputs, Output{Name: "logits", Value: g.Values[vOProj]})
		}, `output "logits": empty or duplicate name`},
		{"empty output name", func(g *Graph) { g.Outputs[0].Name = "" }, `output "": empty or duplicate name`},
		{"output of another graph", func(g *Graph) { g.Outputs[0].Value = other.Values[vLogits] }, `output "logits": not a value of this graph`},
		{"nil output", func(g *Graph) { g.Outputs[0].Value = nil }, `output "logits": not a value of this graph`},
		{"no outputs", func(g *Graph) { g.Outputs = nil }, "no outputs"},
		{"undeclared cache", func(g *Graph) { g.Caches = nil }, "v28 attention: cache 0 not declared"},
		{"cache index past the end", func(g *Graph) {
			g.Values[vAttn].Attrs = Attrs{Int("cache", 1), Float("scale", 0.25)}
		}, "v28 attention: cache 1 not declared"},
		{"cache without entries", func(g *Graph) { g.Caches[0].Entries = nil }, "cache 0: no entries"},
		{"cache dtype", func(g *Graph) { g.Caches[0].DType = I8 }, "cache 0: dtype i8 is not float"},
		{"cache kind", func(g *Graph) { g.Caches[0].Kind = 0 }, "cache 0: unknown kind cachekind(0)"},
		{"cache symbolic entry", func(g *Graph) { g.Caches[0].Entries[1] = Sh(T, 16) }, "cache 0: bad entry shape [T, 16]"},
		{"recorded shape disagrees", func(g *Graph) { g.Values[vOProj].Shape = Sh(T, 65) }, "v30 matmul: recorded type f32[T, 65], inferred f32[T, 64]"},
		{"recorded dtype disagrees", func(g *Graph) { g.Values[vOProj].DType = BF16 }, "v30 matmul: recorded type bf16[T, 64], inferred f32[T, 64]"},
		{"recorded type missing", func(g *Graph) { g.Values[vOProj].DType, g.Values[vOProj].Shape = DInvalid, nil }, "v30 matmul: recorded type invalid[], inferred f32[T, 64]"},
		{"arg type changed", func(g *Graph) { g.Values[vEmbed].Shape = Sh(T, 32) }, "v16 embedding: recorded type f32[T, 32], inferred f32[T, 64]"},
		{"input dtype", func(g *Graph) { g.Values[vTokens].DType = DInvalid }, `v0 input "tokens": invalid dtype`},
		{"weight shape", func(g *Graph) { g.Values[vEmbedW].Shape = Sh(T, 64) }, `v3 weight "model.embed_tokens.weight": weights have static shapes`},
		{"missing attribute", func(g *Graph) { g.Values[vNorm].Attrs = nil }, `v17 rms_norm: missing attribute "eps"`},
		{"unsorted attributes", func(g *Graph) {
			a := g.Values[vRoPEQ].Attrs
			a[0], a[2] = a[2], a[0]
		}, `v26 rope: attributes not sorted: "style" after "theta"`},
		{"bad attribute key", func(g *Graph) { g.Values[vNorm].Attrs = append(g.Values[vNorm].Attrs, Int("z z", 1)) }, `v17 rms_norm: attribute key "z z" is not an identifier`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := buildQwen3Layer(t)
			tt.mutate(g)
			err := Verify(g)
			if err == nil {
				t.Fatalf("Verify accepted the graph, want %q", tt.want)
			}
			if !errors.Is(err, ErrVerify) {
				t.Errorf("error %v does not wrap ErrVerify", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `graph "qwen3"`) {
				t.Errorf("got %q, want one naming the graph and containing %q", err, tt.want)
			}
		})
	}
}

// TestBuilderFinishVerifies: faults that no single value shows are caught
// when the builder finishes.
func TestBuilderFinishVerifies(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *Builder)
		want  string
	}{
		{"duplicate weight", func(b *Builder) {
			w := b.Weight("w", F32, 4)
			b.Weight("w", F32, 4)
			b.Output("o", w)
		}, `weight "w" already declared by v0`},
		{"duplicate output", func(b *Builder) {
			x := b.Input("x", F32, T, 4)
			b.Output("o", x)
			b.Output("o", b.SiLU(x))
		}, `output "o": empty or duplicate name`},
		{"undeclared cache", func(b *Builder) {
			q := b.Input("q", F32, T, 2, 4)
			b.Output("o", b.Attention(q, q, q, 0, 0.5))
		}, "attention: cache 0 not declared"},
		{"no outputs", func(b *Builder) { b.Input("x", F32, T) }, "no outputs"},
		{"output of a failed step", func(b *Builder) {
			x := b.Input("x", F32, T, 4)
			b.Output("o", b.MatMul(x, x))
		}, "weight must be a static [N, K]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder("g")
			tt.build(b)
			if _, err := b.Finish(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Finish: got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestUses(t *testing.T) {
	g := buildQwen3Layer(t)
	uses := g.Uses()
	// v17 (the first norm) feeds the q, k and v projections; v40 is the output.
	for id, want := range map[int]int{17: 3, 40: 1, 1: 2, 15: 1} {
		if uses[id] != want {
			t.Errorf("uses of v%d = %d, want %d", id, uses[id], want)
		}
	}
	g.Outputs = append(g.Outputs, Output{Name: "bad"}) // must not panic
	g.Uses()
}
