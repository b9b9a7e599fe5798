package models

import (
	"fmt"
	"sort"
	"strings"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
)

// TensorInfo is what Bind needs to know of a checkpoint tensor.
type TensorInfo struct {
	Float bool    // a float dtype the compiler can convert (f32, bf16, f16)
	DType string  // for messages
	Shape []int64 // as stored
}

// Source lists a checkpoint's tensors.
type Source interface {
	Names() []string
	Info(name string) (TensorInfo, bool)
}

// CheckpointSource is a checkpoint as a Source: its f32, bf16 and f16
// tensors are Float.
func CheckpointSource(ck *hf.Checkpoint) Source { return checkpointSource{ck} }

type checkpointSource struct{ ck *hf.Checkpoint }

func (s checkpointSource) Names() []string { return s.ck.Names() }

func (s checkpointSource) Info(name string) (TensorInfo, bool) {
	t, ok := s.ck.Tensor(name)
	if !ok {
		return TensorInfo{}, false
	}
	float := t.DType == hf.F32 || t.DType == hf.BF16 || t.DType == hf.F16
	return TensorInfo{Float: float, DType: t.DType.String(), Shape: t.Shape}, true
}

// BindError lists every problem found matching a graph's weights to a
// checkpoint, so one build attempt shows them all.
type BindError struct {
	Graph      string
	Missing    []string // declared by the model, absent from the checkpoint
	Unexpected []string // in the checkpoint, used by nothing
	Mismatched []string // present with the wrong shape or a non-float dtype
}

func (e *BindError) Error() string {
	var b strings.Builder
	n := len(e.Missing) + len(e.Unexpected) + len(e.Mismatched)
	fmt.Fprintf(&b, "checkpoint does not match the %s model (%d problems):", e.Graph, n)
	list := func(kind string, items []string) {
		const max = 20
		for i, s := range items {
			if i == max {
				fmt.Fprintf(&b, "\n  %s: ... and %d more", kind, len(items)-max)
				break
			}
			fmt.Fprintf(&b, "\n  %s: %s", kind, s)
		}
	}
	list("missing", e.Missing)
	list("wrong shape or dtype", e.Mismatched)
	list("unexpected", e.Unexpected)
	return b.String()
}

// Bind checks every weight the graph declares against the checkpoint:
// present, float, and of the declared shape. Checkpoint tensors that no
// weight uses are reported too, unless ignored says the model skips them.
func Bind(g *ir.Graph, src Source, ignored func(string) bool) error {
	e := &BindError{Graph: g.Name}
	used := map[string]bool{}
	for _, v := range g.Values {
		if v.Op != ir.OpWeight {
			continue
		}
		name := v.Name()
		used[name] = true
		info, ok := src.Info(name)
		if !ok {
			e.Missing = append(e.Missing, fmt.Sprintf("%s %v", name, v.Shape))
			continue
		}
		if !info.Float || !shapeIs(info.Shape, v.Shape) {
			e.Mismatched = append(e.Mismatched, fmt.Sprintf("%s: checkpoint has %s%v, model wants %v", name, info.DType, info.Shape, v.Shape))
		}
	}
	for _, name := range src.Names() {
		if !used[name] && (ignored == nil || !ignored(name)) {
			e.Unexpected = append(e.Unexpected, name)
		}
	}
	if len(e.Missing)+len(e.Unexpected)+len(e.Mismatched) == 0 {
		return nil
	}
	sort.Strings(e.Missing)
	sort.Strings(e.Mismatched)
	sort.Strings(e.Unexpected)
	return e
}

func shapeIs(have []int64, want ir.Shape) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i] != int64(want[i]) {
			return false
		}
	}
	return true
}
