// Package golden reads the reference activations that testdata/golden/
// make_golden.py records with transformers, and compares our outputs with
// them. It is for tests only; goldens are never written by our code.
package golden

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/inference-pio/pio/frontends/hf"
)

// Prompt is one recorded prompt and what transformers computed for it.
type Prompt struct {
	IDs    []int32
	Hidden [][]float32 // per decoder layer, [T·hidden]
	Norm   []float32   // final norm output, [T·hidden]
	Logits []float32   // [T·vocab]
	Greedy []int32     // 16-token greedy continuation
}

// Model is one tiny checkpoint with its goldens.
type Model struct {
	Dir     string
	Prompts []Prompt
	Meta    map[string]any
}

// Root returns the repository's testdata/tiny directory, found from the
// test's working directory.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "testdata", "tiny")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testdata/tiny not found above the working directory")
		}
		dir = parent
	}
}

// Load reads testdata/tiny/<name>.
func Load(name string) (*Model, error) {
	root, err := Root()
	if err != nil {
		return nil, err
	}
	return LoadDir(filepath.Join(root, name))
}

// LoadDir reads the goldens of the checkpoint directory dir:
// golden.safetensors, and golden.json into Meta when the file exists (an
// unreadable or malformed golden.json is an error, never skipped).
func LoadDir(dir string) (*Model, error) {
	m := &Model{Dir: dir}
	meta := filepath.Join(m.Dir, "golden.json")
	b, err := os.ReadFile(meta)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &m.Meta); err != nil {
			return nil, fmt.Errorf("golden %s: %w", meta, hf.JSONError(b, err))
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("golden: %w", err)
	}
	f, err := hf.OpenSafetensors(filepath.Join(m.Dir, "golden.safetensors"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	get := func(name string) ([]float32, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("golden %s: no tensor %q", m.Dir, name)
		}
		if t.DType == hf.I32 {
			out := make([]float32, t.NumElements())
			for i := range out {
				out[i] = float32(int32(uint32(t.Data[4*i]) | uint32(t.Data[4*i+1])<<8 | uint32(t.Data[4*i+2])<<16 | uint32(t.Data[4*i+3])<<24))
			}
			return out, nil
		}
		return t.Float32()
	}
	ints := func(name string) ([]int32, error) {
		v, err := get(name)
		if err != nil {
			return nil, err
		}
		out := make([]int32, len(v))
		for i, x := range v {
			out[i] = int32(x)
		}
		return out, nil
	}
	for i := 0; ; i++ {
		p := "p" + strconv.Itoa(i) + "."
		if _, ok := f.Tensor(p + "ids"); !ok {
			break
		}
		var pr Prompt
		if pr.IDs, err = ints(p + "ids"); err != nil {
			return nil, err
		}
		for l := 0; ; l++ {
			name := p + "hidden." + strconv.Itoa(l)
			if _, ok := f.Tensor(name); !ok {
				break
			}
			h, err := get(name)
			if err != nil {
				return nil, err
			}
			pr.Hidden = append(pr.Hidden, h)
		}
		if pr.Norm, err = get(p + "norm"); err != nil {
			return nil, err
		}
		if pr.Logits, err = get(p + "logits"); err != nil {
			return nil, err
		}
		if pr.Greedy, err = ints(p + "greedy"); err != nil {
			return nil, err
		}
		m.Prompts = append(m.Prompts, pr)
	}
	if len(m.Prompts) == 0 {
		return nil, fmt.Errorf("golden %s: no prompts", m.Dir)
	}
	return m, nil
}

// RelErr is the tensor-relative error max|got−want| / max|want|: the
// scale-aware measure the tolerances are stated in (elementwise relative
// error is meaningless where the reference is near zero). It is +Inf on a
// length mismatch or a non-finite value.
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) || len(want) == 0 {
		return math.Inf(1)
	}
	var maxDiff, maxRef float64
	for i := range want {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return math.Inf(1)
		}
		maxDiff = max(maxDiff, math.Abs(g-w))
		maxRef = max(maxRef, math.Abs(w))
	}
	if maxRef == 0 {
		return maxDiff
	}
	return maxDiff / maxRef
}
