package passes

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
)

// Lower turns a verified graph into the plan the runtime executes: inputs
// and weights become operand tables, reshapes become views that share their
// source's bytes, every other value becomes one step writing one arena
// buffer, and only caches that a step names are kept (renumbered).
//
// Weights enter the plan when a step first reads them. A concat whose args
// are all weights is evaluated at build time: it becomes one plan weight
// with a Recipe naming its parts (the compiler materialises it), and parts
// that no step reads directly do not enter the plan at all.
//
// Buffer offsets come from memory planning (memplan.go): liveness, then
// first-fit reuse in a per-T and a fixed region, 64-byte aligned.
func Lower(g *ir.Graph) (*ir.Plan, error) {
	if err := ir.Verify(g); err != nil {
		return nil, fmt.Errorf("passes: lower: %w", err)
	}
	p := &ir.Plan{}
	refs := make([]ir.Ref, len(g.Values))
	weights := planWeights{p: p, index: map[*ir.Value]int{}}
	cacheMap := map[int64]int64{}
	for _, v := range g.Values {
		switch v.Op {
		case ir.OpInput:
			refs[v.ID] = ir.Ref{Kind: ir.RefInput, Index: len(p.Inputs)}
			p.Inputs = append(p.Inputs, ir.PlanTensor{Name: v.Name(), DType: v.DType, Shape: v.Shape.Clone()})
			continue
		case ir.OpWeight:
			refs[v.ID] = ir.Ref{Kind: ir.RefWeight, Index: -1} // added on first use
			continue
		case ir.OpConcat:
			if allWeights(v.Args) {
				if v.Name() == "" {
					return nil, fmt.Errorf("passes: lower: %v: a concat of weights needs a name for the engine tensor", v)
				}
				refs[v.ID] = ir.Ref{Kind: ir.RefWeight, Index: -1}
				continue
			}
		case ir.OpReshape:
			src := refs[v.Args[0].ID]
			if src.Kind != ir.RefBuffer {
				// Reshaping a weight is a build-time view of it: not yet needed.
				return nil, fmt.Errorf("passes: lower: %v: reshape of an input or weight is not supported", v)
			}
			refs[v.ID] = ir.Ref{Kind: ir.RefBuffer, Index: len(p.Buffers)}
			p.Buffers = append(p.Buffers, ir.Buffer{DType: v.DType, Shape: v.Shape.Clone(), View: src.Index})
			continue
		}
		buf := ir.Buffer{DType: v.DType, Shape: v.Shape.Clone(), View: -1}
		if _, _, err := bufferBytes(buf); err != nil {
			return nil, fmt.Errorf("passes: lower: %v: %w", v, err)
		}
		out := len(p.Buffers)
		p.Buffers = append(p.Buffers, buf)
		refs[v.ID] = ir.Ref{Kind: ir.RefBuffer, Index: out}
		step := ir.Step{Op: v.Op, Out: out, Attrs: append(ir.Attrs(nil), v.Attrs...)}
		for _, a := range v.Args {
			r := refs[a.ID]
			if r.Kind == ir.RefWeight {
				r = weights.ref(a)
			}
			step.Args = append(step.Args, r)
		}
		if info, _ := v.Op.Info(); hasAttr(info, "cache") {
			c := v.Attr().Int("cache")
			if c >= int64(len(g.Caches)) {
				return nil, fmt.Errorf("passes: lower: %v: cache %d not declared", v, c)
			}
			nc, seen := cacheMap[c]
			if !seen {
				nc = int64(len(p.Caches))
				cacheMap[c] = nc
				p.Caches = append(p.Caches, g.Caches[c])
			}
			for i := range step.Attrs {
				if step.Attrs[i].Key == "cache" {
					step.Attrs[i] = ir.Int("cache", nc)
				}
			}
		}
		p.Steps = append(p.Steps, step)
	}
	for _, o := range g.Outputs {
		r := refs[o.Value.ID]
		if r.Kind != ir.RefBuffer {
			return nil, fmt.Errorf("passes: lower: output %q is an input or weight, not a computed value", o.Name)
		}
		p.Outputs = append(p.Outputs, ir.PlanOutput{Name: o.Name, Buffer: r.Index})
	}
	if err := planArena(p); err != nil {
		return nil, fmt.Errorf("passes: lower: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("passes: lower: produced an invalid plan: %w", err)
	}
	return p, nil
}

// planWeights enters weights into a plan when a step first reads them.
type planWeights struct {
	p     *ir.Plan
	index map[*ir.Value]int // weight or folded weight expression -> plan weight index
}

// ref returns the plan weight of v, a weight or a folded weight expression,
// adding it to the plan on first use.
func (w planWeights) ref(v *ir.Value) ir.Ref {
	i, ok := w.index[v]
	if !ok {
		i = len(w.p.Weights)
		w.index[v] = i
		w.p.Weights = append(w.p.Weights, weightTensor(v))
	}
	return ir.Ref{Kind: ir.RefWeight, Index: i}
}

// allWeights reports whether every value is a weight or a folded weight
// expression (isWeightExpr), so that an op over them can run at build time.
func allWeights(vs []*ir.Value) bool {
	for _, a := range vs {
		if !isWeightExpr(a) {
			return false
		}
	}
	return true
}

// weightTensor describes a weight or folded weight expression for the plan.
func weightTensor(v *ir.Value) ir.PlanTensor {
	t := ir.PlanTensor{Name: v.Name(), DType: v.DType, Shape: v.Shape.Clone()}
	if v.Op != ir.OpWeight {
		t.Recipe = &ir.Recipe{Op: v.Op, Attrs: v.Attrs}
		for _, a := range v.Args {
			t.Recipe.Parts = append(t.Recipe.Parts, weightTensor(a))
		}
	}
	return t
}

// hasAttr reports whether the op declares attribute key.
func hasAttr(info ir.OpInfo, key string) bool {
	_, ok := info.Attr(key)
	return ok
}
