package ir

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const smallGraph = `graph "small" {
  cache 0 = kv layer=3 f32 [[1, 4], [1, 4]]
  v0 = input() {name="x"} : f32[T, 8]
  v1 = input() {name="pos"} : i32[T]
  v2 = weight() {name="w"} : bf16[8, 8]
  v3 = matmul(v0, v2) : f32[T, 8]
  v4 = reshape(v3) {shape=[-1, 2, 4]} : f32[T, 2, 4]
  v5 = rope(v4, v1) {rotary_dims=4, style="interleaved", theta=10000.0} : f32[T, 2, 4]
  v6 = weight() {name="wk"} : bf16[4, 8]
  v7 = matmul(v0, v6) : f32[T, 4]
  v8 = reshape(v7) {shape=[-1, 1, 4]} : f32[T, 1, 4]
  v9 = attention(v5, v8, v8) {cache=0, scale=0.5} : f32[T, 2, 4]
  output "y" = v9
  output "h" = v3
}
`

func TestParseComments(t *testing.T) {
	text := `# a dump of a small graph

graph "small" {   # header comment
	# caches
  cache 0 = kv layer=3 f32 [[1, 4], [1, 4]]
  v0 = input() {name="x"} : f32[T, 8]
  v1=input(){name="pos"}:i32[T]
  v2 = weight() {name="w#1"} : bf16[8, 8]  # the '#' inside the name is not a comment
  v3 = matmul(v0, v2) : f32[T, 8]

  v4 = reshape(v3) {shape=[-1, 2, 4]} : f32[T, 2, 4]
  v5 = rope(v4, v1) {theta=1e4, style="interleaved", rotary_dims=4} : f32[T, 2, 4]
  v6 = weight() {name="wk"} : bf16[4, 8]
  v7 = matmul(v0, v6) : f32[T, 4]   # k and v share one projection
  v8 = reshape(v7) {shape=[-1, 1, 4]} : f32[T, 1, 4]
  v9 = attention(v5, v8, v8) {cache=0, scale=0.5} : f32[T, 2, 4]
  output "y" = v9
  output "h" = v3
}
# trailing comment` + "\r\n"
	g, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(smallGraph, `"w"`, `"w#1"`, 1)
	if diff := cmp.Diff(Print(g), want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	g, err = Parse(smallGraph)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Print(g), smallGraph); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

// TestParseErrors checks that bad text is rejected with the line it is on.
func TestParseErrors(t *testing.T) {
	// edit replaces the first occurrence of old in smallGraph.
	edit := func(old, new string) string {
		if !strings.Contains(smallGraph, old) {
			panic(old)
		}
		return strings.Replace(smallGraph, old, new, 1)
	}
	tests := []struct {
		name, text, want string
	}{
		{"empty", "", "line 1: no graph"},
		{"only comments", "# nothing\n\n", "line 3: no graph"},
		{"no header", "v0 = input() {name=\"x\"} : f32[T]\n", `line 1: want "graph", got "v0"`},
		{"unquoted name", "graph small {\n}\n", "line 1: want the graph's quoted name"},
		{"header junk", "graph \"g\" { v0\n}\n", `line 1: unexpected "v0" at the end of the line`},
		{"no closing brace", strings.TrimSuffix(smallGraph, "}\n"), "line 15: missing closing }"},
		{"after closing brace", smallGraph + "v9\n", `line 16: unexpected "v9" after the closing }`},
		{"unterminated string", edit(`{name="x"}`, `{name="x}`), "line 3: unterminated string"},
		{"bad escape", edit(`{name="x"}`, `{name="\q"}`), `line 3: bad string "\q"`},
		{"bad character", edit(`: f32[T, 8]`, `: f32[T; 8]`), `line 3: unexpected character "; 8]"`},
		{"unknown item", edit("  output \"y\"", "  result \"y\""), `line 13: want a cache, a value or an output, got "result"`},
		{"unknown op", edit("matmul(v0, v2)", "matmal(v0, v2)"), `line 6: unknown op "matmal"`},
		{"undefined value", edit("matmul(v0, v2)", "matmul(v0, v9)"), "line 6: value v9 is not defined on an earlier line"},
		{"forward reference", edit("matmul(v0, v2)", "matmul(v0, v3)"), "line 6: value v3 is not defined"},
		{"duplicate label", edit("v3 = matmul", "v2 = matmul"), "line 6: value v2 defined twice"},
		{"bad label", edit("matmul(v0, v2)", "matmul(v0, w2)"), `line 6: want a value label (v<N>), got "w2"`},
		{"missing comma", edit("matmul(v0, v2)", "matmul(v0 v2)"), `line 6: want ",", got "v2"`},
		{"missing type", edit("matmul(v0, v2) : f32[T, 8]", "matmul(v0, v2)"), `line 6: want ":", got end of line`},
		{"wrong type", edit("matmul(v0, v2) : f32[T, 8]", "matmul(v0, v2) : f32[T, 9]"), "line 6: v3 matmul: recorded type f32[T, 9], inferred f32[T, 8]"},
		{"wrong dtype", edit("matmul(v0, v2) : f32[T, 8]", "matmul(v0, v2) : bf16[T, 8]"), "line 6: v3 matmul: recorded type bf16[T, 8], inferred f32[T, 8]"},
		{"relabelled error", edit("v3 = matmul(v0, v2) : f32[T, 8]", "v30 = matmul(v0, v2) : f32[T, 9]"), "line 6: v30 (value 3): v3 matmul: recorded type"},
		{"unknown dtype", edit(": f32[T, 8]", ": f33[T, 8]"), `line 3: unknown dtype "f33"`},
		{"negative dim", edit(": f32[T, 8]", ": f32[T, -8]"), `line 3: want a dimension (a size, T or S), got "-8"`},
		{"two symbolic dims", edit(": f32[T, 8]", ": f32[T, S]"), "line 3: shape [T, S] has more than one symbolic dimension"},
		{"huge dim", edit(": f32[T, 8]", ": f32[T, 99999999999999999999]"), "line 3: dimension 99999999999999999999 out of range"},
		{"float dim", edit(": f32[T, 8]", ": f32[T, 8.0]"), `line 3: want a dimension`},
		{"overflowing shape", edit(": f32[T, 8]", ": f32[T, 4294967296, 4294967296]"), "line 3: shape [T, 4294967296, 4294967296] overflows"},
		{"missing attribute", edit(`{rotary_dims=4, `, `{`), `line 8: v5 rope: missing attribute "rotary_dims"`},
		{"duplicate attribute", edit(`{cache=0, `, `{cache=0, cache=1, `), `line 12: attention: duplicate attribute "cache"`},
		{"bad attribute", edit(`theta=10000.0`, `theta=1e999`), "line 8: attribute theta: bad number 1e999"},
		{"huge int attribute", edit(`cache=0`, `cache=99999999999999999999`), "line 12: attribute cache: integer 99999999999999999999 out of range"},
		{"attribute without value", edit(`cache=0`, `cache=`), `line 12: attribute cache: want a value, got ","`},
		{"float in int list", edit(`shape=[-1, 2, 4]`, `shape=[-1, 2.0, 4]`), `line 7: want an integer list element, got "2.0"`},
		{"attribute key", edit(`{cache=0`, `{"cache"=0`), `line 12: want an attribute name, got "cache"`},
		{"bad rope style", edit(`"interleaved"`, `"gptj"`), `line 8: v5 rope: style must be "neox" or "interleaved", got "gptj"`},
		{"bad reshape", edit(`shape=[-1, 2, 4]`, `shape=[-1, 3, 4]`), "line 7: v4 reshape: cannot reshape [T, 8] to [T, 3, 4]"},
		{"arity", edit("matmul(v0, v2)", "matmul(v0)"), "line 6: v3 matmul: want 2 args, got 1"},
		{"cache out of order", edit("cache 0 =", "cache 1 ="), "line 2: cache 1 declared out of order (want cache 0)"},
		{"cache kind", edit("= kv layer", "= kvv layer"), `line 2: unknown cache kind "kvv"`},
		{"cache dtype", edit("layer=3 f32", "layer=3 i32"), "line 2: cache 0: dtype i32 is not float"},
		{"cache entries", edit("[[1, 4], [1, 4]]", "[]"), "line 2: cache 0: no entries"},
		{"cache symbolic entry", edit("[[1, 4], [1, 4]]", "[[T, 4]]"), "line 2: cache 0: bad entry shape [T, 4]"},
		{"cache layer", edit("layer=3", "layer=x"), `line 2: want an integer layer, got "x"`},
		{"output name", edit(`output "y"`, `output y`), `line 13: want the output's quoted name, got "y"`},
		{"output undefined", edit(`output "y" = v9`, `output "y" = v10`), "line 13: value v10 is not defined"},
		{"duplicate output", edit(`output "h"`, `output "y"`), `line 14: output "y" declared twice`},
		{"output junk", edit(`output "y" = v9`, `output "y" = v9 v6`), `line 13: unexpected "v6" at the end of the line`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := Parse(tt.text)
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q:\n%s", tt.want, Print(g))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestParseVerifies checks that graph-level faults, found by Verify after
// the last line, are reported as verifier errors.
func TestParseVerifies(t *testing.T) {
	tests := []struct{ name, old, new, want string }{
		{"undeclared cache", "{cache=0, ", "{cache=1, ", "v9 attention: cache 1 not declared"},
		{"duplicate weight", `{name="pos"} : i32[T]`, `{name="x"} : i32[T]`, `v1: input "x" already declared by v0`},
		{"no outputs", "  output \"y\" = v9\n  output \"h\" = v3\n", "", "no outputs"},
		{"empty weight name", `{name="w"}`, `{name=""}`, "v2 weight: empty name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.Replace(smallGraph, tt.old, tt.new, 1))
			if err == nil || !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a verifier error containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and that whatever it accepts
// prints to a fixed point: Print(Parse(Print(Parse(x)))) == Print(Parse(x)).
func FuzzParse(f *testing.F) {
	f.Add(smallGraph)
	f.Add(Print(buildQwen3Layer(f)))
	f.Add("graph \"\" {\n  v0 = input() {name=\"\\xff\"} : f32[]\n  output \"\" = v0\n}\n")
	f.Add("graph \"g\" {\n  v0 = input() {name=\"x\"} : f32[S, 0]\n  v1 = silu(v0) {a=-0.0, b=inf, c=nan, d=[], e=1e-300} : f32[S, 0]\n  output \"o\" = v1\n}\n")
	f.Add("graph \"g\" {\n  v0 = weight() {name=\"x\"} : f32[4, 4]\n  v1 = reshape(v0) {shape=[16]} : f32[16]\n  output \"o\" = v1\n}\n")
	f.Add("# comment\ngraph \"g\" { # c\n  v1 = input() {name=\"x\"} : f32[T]\n  v0 = sigmoid(v1) : f32[T]\n  output \"o\" = v0\n}\n")
	f.Fuzz(func(t *testing.T, text string) {
		g, err := Parse(text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") && !errors.Is(err, ErrVerify) {
				t.Errorf("error without a line: %v", err)
			}
			return
		}
		once := Print(g)
		g2, err := Parse(once)
		if err != nil {
			t.Fatalf("Parse(Print(Parse(x))) failed: %v\ninput:\n%q\nprinted:\n%s", err, text, once)
		}
		if diff := cmp.Diff(Print(g2), once); diff != "" {
			t.Fatalf("no fixed point (-got +want):\n%s", diff)
		}
	})
}
