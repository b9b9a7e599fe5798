package ir

import (
	"errors"
	"strings"
	"testing"
)

// The verifier checks every value's attributes against its op's
// declarations: a key the op does not declare (a misspelled optional one
// included) and a value of the wrong kind are errors naming the value, the
// op, the key and the value.
func TestVerifyAttrSchema(t *testing.T) {
	const vNorm, vRoPEQ, vAttn = 17, 26, 28 // see testdata/qwen3_layer.txt
	tests := []struct {
		name string
		v    int
		set  Attrs
		want string
	}{
		{"unknown key", vNorm, Attrs{Float("eps", 1e-6), Int("unit_ofset", 1)},
			`v17 rms_norm: unknown attribute unit_ofset=1 (rms_norm takes eps, unit_offset)`},
		{"string for an int", vAttn, Attrs{Str("cache", "0"), Float("scale", 0.25)},
			`v28 attention: attribute cache="0" is a string, want an integer`},
		{"float for an int", vAttn, Attrs{Float("cache", 0), Float("scale", 0.25)},
			`v28 attention: attribute cache=0.0 is a float, want an integer`},
		{"string for a float", vNorm, Attrs{Str("eps", "1e-6")},
			`v17 rms_norm: attribute eps="1e-6" is a string, want a float`},
		{"list for a bool", vNorm, Attrs{Float("eps", 1e-6), Ints("unit_offset", 1)},
			`v17 rms_norm: attribute unit_offset=[1] is an integer list, want a bool (0 or 1)`},
		{"bool out of range", vNorm, Attrs{Float("eps", 1e-6), Int("unit_offset", 2)},
			`v17 rms_norm: unit_offset must be 0 or 1, got 2`},
		{"int for a string", vRoPEQ, Attrs{Int("rotary_dims", 16), Int("style", 0), Float("theta", 1e6)},
			`v26 rope: attribute style=0 is an integer, want a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := buildQwen3Layer(t)
			g.Values[tt.v].Attrs = tt.set
			err := Verify(g)
			if err == nil || !errors.Is(err, ErrVerify) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Verify: got %v, want an ErrVerify containing %q", err, tt.want)
			}
		})
	}
	// A float attribute may be written as an integer (the text form reads
	// "eps=1" as one).
	g := buildQwen3Layer(t)
	g.Values[vNorm].Attrs = Attrs{Int("eps", 1)}
	if err := Verify(g); err != nil {
		t.Errorf("integer eps: %v", err)
	}
	if got := g.Values[vNorm].Attr().Float("eps"); got != 1 {
		t.Errorf("integer eps reads as %v", got)
	}
}

// Plans read from engines go through the same declarations.
func TestValidateAttrSchema(t *testing.T) {
	p := validPlan()
	p.Steps[1].Attrs = Attrs{Float("eps", 1e-6), Float("unit_offset", 1)}
	err := p.Validate()
	if want := `step 1: v2 rms_norm: attribute unit_offset=1.0 is a float, want a bool (0 or 1)`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: got %v, want %q", err, want)
	}
	p = validPlan()
	p.Steps[1].Attrs = Attrs{Float("eps", 1e-6), Float("epsilon", 1e-6)}
	err = p.Validate()
	if want := `step 1: v2 rms_norm: unknown attribute epsilon=1e-06`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Validate: got %v, want %q", err, want)
	}
}

// An absent optional attribute reads as the schema's default; reading a
// key the op does not declare, or as another type, is a programming error
// and panics.
func TestAttrReader(t *testing.T) {
	r := ReadAttrs(OpFusedMatMul, Attrs{Float("eps", 1e-6), Int("norm", 1)})
	if !r.Bool("norm") || r.Bool("residual") || r.String("act") != "none" || r.Float("eps") != 1e-6 || len(r.Ints("sections")) != 0 || r.Has("sections") {
		t.Errorf("fused_matmul defaults: norm %v residual %v act %q eps %v sections %v", r.Bool("norm"), r.Bool("residual"), r.String("act"), r.Float("eps"), r.Ints("sections"))
	}
	if got := ReadAttrs(OpRouterWeights, Attrs{Str("scoring", "softmax")}).Float("scale"); got != 1 {
		t.Errorf("router_weights scale defaults to %v, want 1", got)
	}
	if got := ReadAttrs(OpGatedDeltaRule, Attrs{Int("cache", 0), Float("scale", 1)}).Int("chunk"); got != 64 {
		t.Errorf("gated_delta_rule chunk defaults to %v, want 64", got)
	}
	if got := ReadAttrs(OpDeltaNetCore, nil).Int("zrow"); got != -1 {
		t.Errorf("deltanet_core zrow defaults to %v, want -1", got)
	}
	qkv := ReadAttrs(OpQKVAttention, Attrs{Int("head_dim", 16)})
	if got := qkv.Int("v_head_dim"); got != 16 {
		t.Errorf("qkv_attention v_head_dim defaults to %v, want head_dim 16", got)
	}
	if got := ReadAttrs(OpQKVAttention, Attrs{Int("head_dim", 16), Int("v_head_dim", 8)}).Int("v_head_dim"); got != 8 {
		t.Errorf("qkv_attention v_head_dim = %v, want 8", got)
	}
	for name, read := range map[string]func(){
		"undeclared key": func() { r.Int("start") },
		"wrong type":     func() { r.Int("norm") },
		"missing":        func() { ReadAttrs(OpSection, nil).Int("start") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			read()
		}()
	}
}

// Every op's declarations are consistent (defineOp panics otherwise), and
// the declarations shared by ops that compute the same part agree.
func TestOpSchemas(t *testing.T) {
	for _, op := range Ops() {
		info, _ := op.Info()
		if err := info.checkSchema(); err != nil {
			t.Errorf("%v: %v", op, err)
		}
	}
	bad := OpInfo{Name: "bad", Attrs: []AttrSpec{optInt("a", 0), {Key: "b", Type: TInt, Default: Str("b", "x")}}}
	if err := bad.checkSchema(); err == nil {
		t.Error("a string default of an int attribute passed")
	}
}

// slice (67) is retired: section computes the same. Text and plans that
// use it read as section, with len renamed size.
func TestRetiredSlice(t *testing.T) {
	if by, ok := Op(67).Retired(); !ok || by != OpSection || Op(67).String() != "slice" {
		t.Fatalf("op 67: %v retired=%v by %v", Op(67), ok, by)
	}
	if _, ok := Op(67).Info(); ok {
		t.Error("a retired op has a live table entry")
	}
	const old = `graph "g" {
  v0 = input() {name="x"} : f32[T, 8]
  v1 = slice(v0) {len=3, start=2} : f32[T, 3]
  output "y" = v1
}
`
	g, err := Parse(old)
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(old, "slice(v0) {len=3, start=2}", "section(v0) {size=3, start=2}", 1)
	if got := Print(g); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	b := NewBuilder("g")
	b.Output("y", b.Op(Op(67), vals(b.Input("x", F32, T, 8)), Int("start", 2), Int("len", 3)))
	if _, err := b.Finish(); err == nil || !strings.Contains(err.Error(), "op slice is retired (section replaced it)") {
		t.Errorf("building a retired op: %v", err)
	}

	p := &Plan{Steps: []Step{{Op: Op(67), Attrs: Attrs{Int("len", 3), Int("start", 2)}}, {Op: OpRMSNorm, Attrs: Attrs{Float("eps", 1e-6)}}}}
	if err := p.Upgrade(); err != nil {
		t.Fatal(err)
	}
	if s := p.Steps[0]; s.Op != OpSection || s.Attrs.Format() != "{size=3, start=2}" || p.Steps[1].Op != OpRMSNorm {
		t.Errorf("upgraded steps: %v %s, %v", s.Op, s.Attrs.Format(), p.Steps[1].Op)
	}
	p = &Plan{Steps: []Step{{Op: Op(67), Attrs: Attrs{Int("len", 3), Int("size", 3)}}}}
	if err := p.Upgrade(); err == nil || !strings.Contains(err.Error(), `duplicate attribute "size"`) {
		t.Errorf("upgrading a step with both len and size: %v", err)
	}
}
