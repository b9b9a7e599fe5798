package engine

import (
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
