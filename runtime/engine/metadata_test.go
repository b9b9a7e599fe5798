package engine

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inference-pio/pio/ir"
)

// TestEncodeDecodeEncode: what the decoder reads back encodes to the same
// bytes, for metadata with every table (stages, both kernels sections,
// cache entries, attributes of every kind), with absent fields and with
// empty ones; and it is what was encoded, absent and empty kept apart
// (but for a kernels section, whose absent vectors read back empty).
func TestEncodeDecodeEncode(t *testing.T) {
	weights := func(p *ir.Plan) []WeightEntry {
		entries, _, err := layoutWeights(specsFor(p))
		if err != nil {
			t.Fatal(err)
		}
		return entries
	}
	sparse := testKernels()
	sparse.Images, sparse.Candidates, sparse.Argmax, sparse.Compiler = nil, "", "", ""
	sparse.Launches[0].Params = nil
	empty := tinyPlan()
	empty.Caches, empty.Outputs = []ir.CacheSpec{}, []ir.PlanOutput{}
	empty.Steps[0].Attrs = ir.Attrs{}
	staged := stagedMeta(testKernels(), testKernels())
	staged.PreprocessorConfigJSON = []byte(`{"patch_size": 16}`)
	for _, tc := range []struct {
		name    string
		meta    *Metadata
		weights []WeightEntry
		exact   bool // decodes to meta and weights as they are
	}{
		{"bare", &Metadata{Plan: tinyPlan()}, []WeightEntry{}, true},
		{"empty lists", &Metadata{Plan: empty, TokenizerJSON: []byte{}}, []WeightEntry{}, true},
		{"rich", testMeta(richPlan()), weights(richPlan()), true},
		{"staged", staged, weights(richPlan()), true},
		{"sparse kernels", stagedMeta(sparse, sparse), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, err := encodeMetadata(tc.meta, tc.weights)
			if err != nil {
				t.Fatal(err)
			}
			m, w, err := decodeMetadata(first)
			if err != nil {
				t.Fatal(err)
			}
			if tc.exact {
				if d := cmp.Diff(m, tc.meta); d != "" {
					t.Errorf("metadata (-decoded +encoded):\n%s", d)
				}
				if d := cmp.Diff(w, tc.weights); d != "" {
					t.Errorf("weights (-decoded +encoded):\n%s", d)
				}
			}
			second, err := encodeMetadata(m, w)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Errorf("re-encoding the decoded metadata gives other bytes (%d, then %d)", len(first), len(second))
			}
		})
	}
}
