package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestStagesRoundTrip writes an engine whose main plan is richPlan and
// whose one extra stage ("vision") is tinyPlan sharing its embedding, and
// reads it back: the stage, its weight indices and the header's MaxOp
// (taken over all plans) survive.
func TestStagesRoundTrip(t *testing.T) {
	main, vision := richPlan(), tinyPlan()
	vision.Weights[0].Name = "model.embed_tokens.weight" // shared with the main plan
	meta := testMeta(main)
	meta.Stages = []Stage{{Name: "vision", Plan: vision}}
	meta.PreprocessorConfigJSON = []byte(`{"patch_size": 16}`)
	path := build(t, meta, specsFor(main), WriteOptions{})
	e, err := Open(path, OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Header.Minor != FormatMinor || FormatMinor < 2 {
		t.Errorf("format minor %d", e.Header.Minor)
	}
	if len(e.Meta.Stages) != 1 || e.Meta.Stages[0].Name != "vision" {
		t.Fatalf("stages %+v", e.Meta.Stages)
	}
	if d := cmp.Diff(e.Meta.Stages[0].Plan, vision); d != "" {
		t.Errorf("stage plan (-got +want):\n%s", d)
	}
	if len(e.StageWeights) != 1 || len(e.StageWeights[0]) != 1 || e.Weights[e.StageWeights[0][0]].Name != "model.embed_tokens.weight" {
		t.Errorf("stage weights %v", e.StageWeights)
	}
	if string(e.Meta.PreprocessorConfigJSON) != `{"patch_size": 16}` {
		t.Errorf("preprocessor config %q", e.Meta.PreprocessorConfigJSON)
	}
	if d := cmp.Diff(e.Meta.Plan, main); d != "" {
		t.Errorf("main plan (-got +want):\n%s", d)
	}

	// A single-plan engine reads back with no stages.
	plain := build(t, testMeta(tinyPlan()), specsFor(tinyPlan()), WriteOptions{})
	e2, err := Open(plain, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if e2.Meta.Stages != nil || e2.StageWeights != nil || e2.Meta.PreprocessorConfigJSON != nil {
		t.Errorf("plain engine has stages %+v", e2.Meta.Stages)
	}
}

func TestStagesCreateRefuses(t *testing.T) {
	p := tinyPlan()
	missing := tinyPlan()
	missing.Weights[0].Name = "not.stored"
	bad := tinyPlan()
	bad.Steps[0].Out = 7
	for _, c := range []struct {
		stages []Stage
		want   string
	}{
		{[]Stage{{Name: "", Plan: tinyPlan()}}, "unique name"},
		{[]Stage{{Name: "v", Plan: tinyPlan()}, {Name: "v", Plan: tinyPlan()}}, "unique name"},
		{[]Stage{{Name: "v"}}, "unique name"},
		{[]Stage{{Name: "v", Plan: missing}}, "not.stored"},
		{[]Stage{{Name: "v", Plan: bad}}, `stage "v"`},
	} {
		meta := testMeta(p)
		meta.Stages = c.stages
		err := Create(filepath.Join(t.TempDir(), "e.pio"), meta, specsFor(p), fillPattern, WriteOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error containing %q", c.stages, err, c.want)
		}
	}
	// A stage that names a missing weight, written past Create's checks, is refused by Parse.
	meta := testMeta(p)
	meta.Stages = []Stage{{Name: "v", Plan: missing}}
	entries, regionLen, err := layoutWeights(specsFor(p))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "e.pio")
	if err := write(path, meta, entries, regionLen, fillPattern, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data); err == nil || !strings.HasPrefix(err.Error(), `engine: stage "v": `) || !errors.Is(err, ErrCorrupt) {
		t.Errorf("Parse: %v", err)
	}
}

// stagedMeta is a two-plan engine's metadata: richPlan with the main
// kernels k, and a "vision" stage (tinyPlan sharing the embedding) with
// the stage kernels sk.
func stagedMeta(k, sk *Kernels) *Metadata {
	vision := tinyPlan()
	vision.Weights[0].Name = "model.embed_tokens.weight"
	meta := testMeta(richPlan())
	meta.Kernels = k
	meta.Stages = []Stage{{Name: "vision", Plan: vision, Kernels: sk}}
	return meta
}

// TestStageKernelsRoundTrip: a stage's kernels section (format 1.3)
// survives a round trip, compressed or not, apart from the main plan's;
// a stage without one reads back nil, also from a file whose header says
// 1.2 (written before stages carried kernels).
func TestStageKernelsRoundTrip(t *testing.T) {
	sk := testKernels()
	sk.Source, sk.Argmax, sk.ArgmaxVocab = []byte(`extern "C" __global__ void vision_k() {}`), "", 0
	sk.Launches[0].Kernel = "vision_k"
	for _, opt := range []WriteOptions{{}, {UncompressedMetadata: true}} {
		meta := stagedMeta(testKernels(), sk)
		e, err := Open(build(t, meta, specsFor(meta.Plan), opt), OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if e.Header.Minor != 3 {
			t.Errorf("format minor %d, want 3", e.Header.Minor)
		}
		if d := cmp.Diff(e.Meta.Stages[0].Kernels, sk); d != "" {
			t.Errorf("stage kernels (-got +want):\n%s", d)
		}
		if d := cmp.Diff(e.Meta.Kernels, testKernels()); d != "" {
			t.Errorf("main kernels (-got +want):\n%s", d)
		}
		e.Close()
	}

	// Absent: kernels on the main plan only, or on none.
	for _, k := range []*Kernels{testKernels(), nil} {
		meta := stagedMeta(k, nil)
		data, err := os.ReadFile(build(t, meta, specsFor(meta.Plan), WriteOptions{}))
		if err != nil {
			t.Fatal(err)
		}
		data[10], data[11] = 2, 0 // as a 1.2 writer stamped it; the header is outside the CRC
		e, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if e.Header.Minor != 2 || e.Meta.Stages[0].Kernels != nil || (e.Meta.Kernels != nil) != (k != nil) {
			t.Errorf("minor %d, stage kernels %+v, main kernels %v", e.Header.Minor, e.Meta.Stages[0].Kernels, e.Meta.Kernels != nil)
		}
		e.Close()
	}
}

// TestStageKernelsMalformed damages the stage's kernels section in place
// (uncompressed metadata, checksum repaired): a launch grid of the wrong
// length, and a vector whose length runs past the metadata. Both are
// ErrCorrupt errors naming the stage, never panics.
func TestStageKernelsMalformed(t *testing.T) {
	sk := testKernels()
	meta := stagedMeta(nil, sk)
	data, err := os.ReadFile(build(t, meta, specsFor(meta.Plan), WriteOptions{UncompressedMetadata: true}))
	if err != nil {
		t.Fatal(err)
	}
	// The grid vector: its length (18) then its 18 int64s.
	var grid []byte
	grid = binary.LittleEndian.AppendUint32(grid, 18)
	for _, g := range sk.Launches[0].Grid {
		for _, v := range []int64{g.T, g.S, g.Tiles, g.Splits, g.Fixed, g.Div} {
			grid = binary.LittleEndian.AppendUint64(grid, uint64(v))
		}
	}
	at := bytes.Index(data, grid)
	if at < 0 || bytes.Count(data, grid) != 1 {
		t.Fatalf("grid vector found %d times", bytes.Count(data, grid))
	}
	for _, c := range []struct {
		n    uint32
		want string
	}{
		{17, `stage "vision": kernel launch 0: grid has 17 numbers, want 18`},
		{1 << 28, `stage "vision": vector of 268435456 elements`},
	} {
		bad := bytes.Clone(data)
		binary.LittleEndian.PutUint32(bad[at:], c.n)
		bad, ok := fixMetaCRC(bad)
		if !ok {
			t.Fatal("checksum not repaired")
		}
		_, err := Parse(bad)
		if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrCorrupt) {
			t.Errorf("grid length %d: %v, want a corrupt-engine error containing %q", c.n, err, c.want)
		}
	}
}
