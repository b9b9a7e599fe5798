package compiler

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/passes"
)

func f32Tensor(name string, shape []int64, vals ...float32) *hf.Tensor {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return &hf.Tensor{Name: name, DType: hf.F32, Shape: shape, Data: b}
}

// A concat of weights is lowered to one plan weight with a recipe, its
// parts stay out of the plan, and materialising it joins rows and columns
// exactly as the graph says.
func TestConcatRecipe(t *testing.T) {
	src := map[string]*hf.Tensor{
		"a": f32Tensor("a", []int64{2, 2}, 1, 2, 3, 4),
		"b": f32Tensor("b", []int64{2, 1}, 5, 6),
		"c": f32Tensor("c", []int64{1, 3}, 7, 8, 9),
	}
	b := ir.NewBuilder("t")
	x := b.Input("x", ir.F32, ir.T, 3)
	ab := b.Concat(1, "ab", b.Weight("a", ir.F32, 2, 2), b.Weight("b", ir.F32, 2, 1))
	w := b.Concat(0, "abc", ab, b.Weight("c", ir.F32, 1, 3))
	b.Output("y", b.MatMul(x, w))
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Weights) != 1 || p.Weights[0].Name != "abc" || p.Weights[0].Recipe == nil {
		t.Fatalf("plan weights %+v, want only the folded abc", p.Weights)
	}
	dst := make([]byte, 9*4)
	lookup := func(n string) (*hf.Tensor, bool) { t, ok := src[n]; return t, ok }
	if err := materialize(p.Weights[0], lookup, dst); err != nil {
		t.Fatal(err)
	}
	want := []float32{1, 2, 5, 3, 4, 6, 7, 8, 9}
	for i, w := range want {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(dst[4*i:])); got != w {
			t.Fatalf("element %d = %v, want %v (all: want %v)", i, got, w, want)
		}
	}
	delete(src, "c")
	if err := materialize(p.Weights[0], lookup, dst); err == nil {
		t.Error("missing part: want an error")
	}
}
