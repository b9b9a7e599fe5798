// Package golden reads the reference activations that testdata/golden/
// make_golden.py records with transformers, and compares our outputs with
// them. It is for tests only; goldens are never written by our code.
package golden

import (
	"encoding/json"
	"fmt"
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
	m := &Model{Dir: filepath.Join(root, name)}
	if b, err := os.ReadFile(filepath.Join(m.Dir, "golden.json")); err == nil {
		_ = json.Unmarshal(b, &m.Meta)
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
		out := make([]int32, len(v))
		for i, x := range v {
			out[i] = int32(x)
		}
		return out, err
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
