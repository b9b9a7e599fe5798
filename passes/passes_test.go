package passes

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/tools/txtar"

	"github.com/inference-pio/pio/ir"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/<pass>/*.txtar")

// TestPassGoldens runs each pass on the input section of every
// testdata/<pass>/<case>.txtar and compares with its want section; running
// the pass again on want must change nothing.
func TestPassGoldens(t *testing.T) {
	for _, p := range Pipeline {
		files, _ := filepath.Glob(filepath.Join("testdata", p.Name, "*.txtar"))
		if len(files) == 0 {
			t.Errorf("pass %q has no golden cases in testdata/%s", p.Name, p.Name)
		}
		for _, file := range files {
			t.Run(p.Name+"/"+filepath.Base(file), func(t *testing.T) {
				ar, err := txtar.ParseFile(file)
				if err != nil {
					t.Fatal(err)
				}
				sec := map[string]string{}
				for _, f := range ar.Files {
					sec[f.Name] = string(f.Data)
				}
				g, err := ir.Parse(sec["input"])
				if err != nil {
					t.Fatalf("input: %v", err)
				}
				if err := RunPasses(g, []Pass{p}, Options{Check: true}); err != nil {
					t.Fatal(err)
				}
				got := ir.Print(g)
				if *update {
					for i := range ar.Files {
						if ar.Files[i].Name == "want" {
							ar.Files[i].Data = []byte(got)
						}
					}
					if _, ok := sec["want"]; !ok {
						ar.Files = append(ar.Files, txtar.File{Name: "want", Data: []byte(got)})
					}
					if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				if diff := cmp.Diff(got, sec["want"]); diff != "" {
					t.Errorf("(-got +want)\n%s", diff)
				}
				again, err := ir.Parse(sec["want"])
				if err != nil {
					t.Fatalf("want: %v", err)
				}
				if err := RunPasses(again, []Pass{p}, Options{Check: true}); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(ir.Print(again), sec["want"]); diff != "" {
					t.Errorf("not idempotent: (-second run +want)\n%s", diff)
				}
			})
		}
	}
}

func TestPipelineOrder(t *testing.T) {
	if err := CheckOrder(Pipeline, Order); err != nil {
		t.Fatal(err)
	}
	for _, c := range Order {
		if strings.TrimSpace(c.Why) == "" {
			t.Errorf("constraint %s < %s has no reason", c.Before, c.After)
		}
	}
	bad := []Pass{{Name: "b"}, {Name: "a"}}
	if err := CheckOrder(bad, []Constraint{{Before: "a", After: "b", Why: "test"}}); err == nil {
		t.Error("CheckOrder accepted a violated constraint")
	}
}

func TestDumpIR(t *testing.T) {
	g, err := ir.Parse(deadInput)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Run(g, Options{Check: true, DumpDir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"00-input.ir", fmt.Sprintf("%02d-dce.ir", len(Pipeline))} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("dump %s: %v", name, err)
		}
	}
}

// Errors begin "passes: " and name the pass they come from: one it
// returned, or a graph the verifier rejects after it; Lower's name lower.
func TestErrorsNameThePass(t *testing.T) {
	broken := func(g *ir.Graph) error { g.Values[2].Args = nil; return nil }
	for _, tc := range []struct {
		run  func(*ir.Graph) error
		want string
	}{
		{func(*ir.Graph) error { return errors.New("boom") }, "passes: broken: boom"},
		{broken, "passes: broken: after the pass: ir: invalid graph"},
	} {
		g, err := ir.Parse(deadInput)
		if err != nil {
			t.Fatal(err)
		}
		err = RunPasses(g, []Pass{{Name: "broken", Run: tc.run}}, Options{Check: true})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("got %v, want an error beginning %q", err, tc.want)
		}
	}
	g, err := ir.Parse(deadInput)
	if err != nil {
		t.Fatal(err)
	}
	broken(g)
	if _, err := Lower(g); err == nil || !strings.HasPrefix(err.Error(), "passes: lower: ir: invalid graph") {
		t.Errorf("Lower: got %v, want an error beginning \"passes: lower: \"", err)
	}
}

const deadInput = `graph "t" {
  v0 = input() {name="tokens"} : i32[T]
  v1 = weight() {name="emb"} : f32[8, 4]
  v2 = embedding(v1, v0) : f32[T, 4]
  v3 = silu(v2) : f32[T, 4]
  output "h" = v2
}
`

// Lowering gives a plan that validates, with views for reshapes and only
// the caches that steps use.
func TestLower(t *testing.T) {
	b := ir.NewBuilder("t")
	tok := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	emb := b.Weight("emb", ir.F32, 16, 8)
	unused := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, DType: ir.F32, Entries: []ir.Shape{ir.Sh(1, 4), ir.Sh(1, 4)}})
	_ = unused
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, Layer: 1, DType: ir.F32, Entries: []ir.Shape{ir.Sh(1, 4), ir.Sh(1, 4)}})
	h := b.Embedding(emb, tok)
	q := b.RoPE(b.Reshape(h, ir.T, 2, 4), pos, ir.RoPEOpts{Theta: 1e4, RotaryDims: 4, Style: "neox"})
	kv := b.Reshape(h, ir.T, 2, 4)
	_ = kv
	k := b.Reshape(b.MatMul(h, b.Weight("wk", ir.F32, 4, 8)), ir.T, 1, 4)
	o := b.Attention(q, k, k, c, 0.5)
	b.Output("o", b.Reshape(o, ir.T, 8))
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := DeadCode(g); err != nil {
		t.Fatal(err)
	}
	p, err := Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Caches) != 1 || p.Caches[0].Layer != 1 {
		t.Errorf("caches: %+v, want only layer 1's", p.Caches)
	}
	views := 0
	for _, buf := range p.Buffers {
		if buf.View >= 0 {
			views++
		}
	}
	if views != 3 || len(p.Steps) != 4 {
		t.Errorf("got %d views and %d steps, want 3 and 4:\n%s", views, len(p.Steps), ir.PrintPlan(p))
	}
}

// Options.NoFuse runs no fusion pass; Options.Skip leaves out the named
// passes and rejects names that are not passes.
func TestSkipAndNoFuse(t *testing.T) {
	const src = `graph "t" {
  v0 = input() {name="x"} : f32[T, 8]
  v1 = weight() {name="a"} : f32[4, 8]
  v2 = weight() {name="b"} : f32[4, 8]
  v3 = weight() {name="n"} : f32[8]
  v4 = rms_norm(v0, v3) {eps=1e-06} : f32[T, 8]
  v5 = matmul(v4, v1) : f32[T, 4]
  v6 = matmul(v4, v2) : f32[T, 4]
  v7 = add(v5, v6) : f32[T, 4]
  output "y" = v7
}
`
	for _, tc := range []struct {
		opt           Options
		fused, normed bool
	}{
		{Options{}, true, true},
		{Options{NoFuse: true}, false, false},
		{Options{Skip: []string{"fuse-norm-matmul"}}, true, false},
	} {
		g, err := ir.Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		tc.opt.Check = true
		if err := Run(g, tc.opt); err != nil {
			t.Fatal(err)
		}
		out := ir.Print(g)
		if strings.Contains(out, "fused_matmul") != tc.fused || strings.Contains(out, "norm=1") != tc.normed {
			t.Errorf("%+v: got\n%s", tc.opt, out)
		}
	}
	g, _ := ir.Parse(src)
	err := Run(g, Options{Skip: []string{"fuse-qkv"}})
	if want := `passes: skip "fuse-qkv": not a pass of the pipeline (cse, fold, `; err == nil || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "fuse-sibling-matmuls") {
		t.Errorf("unknown pass: got %v, want an error saying %q and listing the passes", err, want)
	}
}
