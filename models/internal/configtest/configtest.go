// Package configtest checks, for the architecture tests, that a tiny
// checkpoint's shipped config builds and binds, and that setting one
// config.json field the builder does not implement is a build error naming
// that field.
package configtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
)

// Delete, as an Edit value, removes the key.
const Delete = "\x00delete"

// Case sets config.json keys of a tiny checkpoint and expects
// hf.ParseConfig or models.New to fail with an error containing the first edited key's dotted path
// (text_config.rope_parameters.rope_type: nested objects are created as
// needed) and Want.
type Case struct {
	Edits []Edit
	Want  string // a further substring of the error: the refused value, say
}

// Edit sets the value at a dotted key path (Delete removes it).
type Edit struct {
	Path  string
	Value any
}

// Set is a one-edit Case.
func Set(path string, value any, want string) Case {
	return Case{Edits: []Edit{{path, value}}, Want: want}
}

// Load returns the parsed config.json of a checkpoint directory after
// edits.
func Load(t testing.TB, dir string, edits ...Edit) *hf.Config {
	t.Helper()
	cfg, err := hf.ParseConfig(edit(t, dir, edits))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// edit returns the config.json of dir after edits.
func edit(t testing.TB, dir string, edits []Edit) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(raw, &top); err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		m, keys := top, strings.Split(e.Path, ".")
		for _, k := range keys[:len(keys)-1] {
			sub, ok := m[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[k] = sub
			}
			m = sub
		}
		if last := keys[len(keys)-1]; e.Value == Delete {
			delete(m, last)
		} else {
			m[last] = e.Value
		}
	}
	if raw, err = json.Marshal(top); err != nil {
		t.Fatal(err)
	}
	return raw
}

// Unsupported runs the cases against the checkpoint in dir.
func Unsupported(t *testing.T, dir string, cases []Case) {
	t.Helper()
	for _, c := range cases {
		name := c.Edits[0].Path
		t.Run(name, func(t *testing.T) {
			cfg, err := hf.ParseConfig(edit(t, dir, c.Edits)) // a RoPE conflict is a parse error
			if err == nil {
				_, err = models.New(cfg)
			}
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), c.Want) {
				t.Errorf("%v: err = %v\nwant an error naming %s and containing %q", c.Edits, err, name, c.Want)
			}
		})
	}
}

// Builds checks that the config in dir, after edits, makes a model whose
// graphs (every stage of a staged model) verify and bind to the
// checkpoint's tensors, and returns the model.
func Builds(t testing.TB, dir string, edits ...Edit) models.Model {
	t.Helper()
	m, err := models.New(Load(t, dir, edits...))
	if err != nil {
		t.Fatal(err)
	}
	ck, err := hf.OpenCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	src := models.CheckpointSource(ck)
	opt := models.BuildOptions{WeightDType: ir.BF16, Has: func(n string) bool { _, ok := ck.Tensor(n); return ok }}
	var gs []*ir.Graph
	if st, ok := m.(models.Staged); ok {
		if gs, err = st.Stages(opt); err == nil {
			err = st.BindStages(gs, src, m.Ignored)
		}
	} else {
		var g *ir.Graph
		if g, err = m.Build(opt); err == nil {
			gs = []*ir.Graph{g}
			err = models.Bind(g, src, m.Ignored)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if err := ir.Verify(g); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// Shipped checks that the config in dir builds and binds (Builds) and that
// keys classifies every key of it, and returns the model.
func Shipped(t testing.TB, dir string, keys *models.Keys) models.Model {
	t.Helper()
	m := Builds(t, dir)
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	Classified(t, keys, raw)
	return m
}

// Classified checks that the JSON object raw has no key that keys leaves
// unclassified.
func Classified(t testing.TB, keys *models.Keys, raw []byte) {
	t.Helper()
	extra, err := keys.Unclassified(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) > 0 {
		t.Errorf("%skeys not classified: %v", keys.Prefix, extra)
	}
}
