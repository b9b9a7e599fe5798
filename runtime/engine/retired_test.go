package engine

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inference-pio/pio/ir"
)

// slicePlan is tinyPlan with a section of the embedding's rows:
// b1 = section(b0) {start=1, size=2}, f32[T, 2], the output.
func slicePlan() *ir.Plan {
	p := tinyPlan()
	p.Buffers = append(p.Buffers, ir.Buffer{DType: ir.F32, Shape: ir.Sh(ir.T, 2), OffsetPerT: 64, View: -1})
	at, _ := ir.MakeAttrs(ir.Int("start", 1), ir.Int("size", 2))
	p.Steps = append(p.Steps, ir.Step{Op: ir.OpSection, Args: []ir.Ref{{Kind: ir.RefBuffer, Index: 0}}, Out: 1, Attrs: at})
	p.Outputs = []ir.PlanOutput{{Name: "hidden", Buffer: 1}}
	p.ArenaPerT = 72
	return p
}

// An engine built before slice (op 67) was retired loads: its slice steps
// read as section, len renamed size, and the header's highest op is
// checked against the plan as stored. testdata/engines/old-slice.pio is a
// whole model built so (compiler's TestOldSliceEngine runs it).
func TestRetiredOpUpgraded(t *testing.T) {
	want := slicePlan()
	if err := want.Validate(); err != nil {
		t.Fatal(err)
	}
	old := slicePlan()
	old.Steps[1].Op = ir.Op(67)
	old.Steps[1].Attrs, _ = ir.MakeAttrs(ir.Int("start", 1), ir.Int("len", 2))
	entries, n, err := layoutWeights(specsFor(old))
	if err != nil {
		t.Fatal(err)
	}
	data := assemble(t, testMeta(old), entries, n, nil)
	e, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if e.Header.MaxOp != 67 {
		t.Errorf("header's highest op %d, want the stored 67", e.Header.MaxOp)
	}
	if diff := cmp.Diff(e.Meta.Plan, want); diff != "" {
		t.Errorf("plan (-got +want):\n%s", diff)
	}

	// The rename cannot make an invalid step valid or hide a clash.
	old.Steps[1].Attrs, _ = ir.MakeAttrs(ir.Int("start", 1), ir.Int("len", 2), ir.Int("size", 2))
	msg := parseErr(assemble(t, testMeta(old), entries, n, nil))
	if want := `duplicate attribute "size"`; !strings.Contains(msg, want) {
		t.Errorf("slice with len and size: %q, want it to mention %q", msg, want)
	}
	old.Steps[1].Attrs, _ = ir.MakeAttrs(ir.Int("start", 3), ir.Int("len", 2))
	msg = parseErr(assemble(t, testMeta(old), entries, n, nil))
	if want := "v1 section: range [3, 5) is not inside the last dim 4"; !strings.Contains(msg, want) {
		t.Errorf("slice out of range: %q, want it to mention %q", msg, want)
	}
}

// Attribute values the ops' schemas never produce still survive the
// metadata codec as they are: negative and 64-bit integers in lists and
// alone, float extremes, empty lists and strings. (Plans with them do
// not validate, so this goes through the codec alone.)
func TestAttrValuesCodec(t *testing.T) {
	p := tinyPlan()
	p.Steps[0].Attrs, _ = ir.MakeAttrs(ir.Ints("a", -1, 1<<40, math.MinInt64), ir.Int("b", math.MaxInt64), ir.Ints("c"),
		ir.Float("d", math.Inf(-1)), ir.Float("e", 5e-324), ir.Str("f", ""), ir.Str("g", "é\x00"))
	meta := &Metadata{Plan: p}
	raw, err := encodeMetadata(meta, []WeightEntry{})
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := decodeMetadata(raw)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got.Plan.Steps[0].Attrs, p.Steps[0].Attrs); diff != "" {
		t.Errorf("attributes (-decoded +encoded):\n%s", diff)
	}
}

// testdata/engines/old-slice.pio, built before slice was retired, holds
// slice steps as it was written; Parse reads each as the section with the
// same range (compiler's TestOldSliceEngine runs it against a fresh build).
func TestOldSliceEngineFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "engines", "old-slice.pio"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := ParseHeader(data)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := decompress(data[h.MetaOffset:h.MetaOffset+h.MetaStoredLen], h.MetaRawLen)
	if err != nil {
		t.Fatal(err)
	}
	stored, _, err := decodeMetadata(raw)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Meta.Plan.Steps) != len(stored.Plan.Steps) {
		t.Fatalf("%d steps read, %d stored", len(e.Meta.Plan.Steps), len(stored.Plan.Steps))
	}
	slices := 0
	for i, s := range stored.Plan.Steps {
		got := e.Meta.Plan.Steps[i]
		if s.Op != ir.Op(67) {
			if got.Op != s.Op || !got.Attrs.Equal(s.Attrs) {
				t.Errorf("step %d: %v %s read as %v %s", i, s.Op, s.Attrs.Format(), got.Op, got.Attrs.Format())
			}
			continue
		}
		slices++
		var start, n int64
		for _, a := range s.Attrs {
			switch a.Key {
			case "start":
				start = a.I
			case "len":
				n = a.I
			}
		}
		if got.Op != ir.OpSection || got.Attr().Int("start") != start || got.Attr().Int("size") != n || n == 0 {
			t.Errorf("step %d: slice %s read as %v %s", i, s.Attrs.Format(), got.Op, got.Attrs.Format())
		}
	}
	if slices == 0 {
		t.Error("the old engine holds no slice step")
	}
}
