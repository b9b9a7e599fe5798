package passes

import (
	"fmt"
	"slices"

	"github.com/inference-pio/pio/ir"
)

// rewriter collects the edits of one pass: new values (appended to the
// graph, placed later), replacements of old values by new ones, and the
// values a match consumed. finish applies the replacements to every arg and
// output, removes consumed values nothing reads any more, and restores
// topological order, so a pass never edits the value list by hand.
type rewriter struct {
	g        *ir.Graph
	repl     map[*ir.Value]*ir.Value
	consumed map[*ir.Value]bool
	err      error
}

func newRewriter(g *ir.Graph) *rewriter {
	return &rewriter{g: g, repl: map[*ir.Value]*ir.Value{}, consumed: map[*ir.Value]bool{}}
}

// add creates a value with an inferred type; errors are sticky.
func (r *rewriter) add(op ir.Op, args []*ir.Value, attrs ...ir.Attr) *ir.Value {
	if r.err != nil {
		return nil
	}
	v, err := r.g.NewValue(op, ir.DInvalid, nil, args, attrs...)
	if err != nil {
		r.err = fmt.Errorf("building %v: %w", op, err)
		return nil
	}
	return v
}

// replace makes every reader of old read nv instead; old and the values
// listed in consumed are removed when nothing else reads them.
func (r *rewriter) replace(old, nv *ir.Value, consumed ...*ir.Value) {
	if nv == nil {
		return
	}
	r.repl[old] = nv
	r.consumed[old] = true
	for _, c := range consumed {
		r.consumed[c] = true
	}
}

func (r *rewriter) resolve(v *ir.Value) *ir.Value {
	for n := 0; n < len(r.repl)+1; n++ {
		nv, ok := r.repl[v]
		if !ok {
			return v
		}
		v = nv
	}
	return v
}

// finish applies the edits.
func (r *rewriter) finish() error {
	if r.err != nil {
		return r.err
	}
	if len(r.repl) == 0 && len(r.consumed) == 0 {
		return nil
	}
	g := r.g
	for _, v := range g.Values {
		for i, a := range v.Args {
			v.Args[i] = r.resolve(a)
		}
	}
	for i := range g.Outputs {
		g.Outputs[i].Value = r.resolve(g.Outputs[i].Value)
	}
	// Everything that was neither replaced nor consumed is a root; consumed
	// values live only while a root reads them (a consumed value with side
	// effects, such as an attention a fused op now performs, goes too).
	live := map[*ir.Value]bool{}
	var mark func(v *ir.Value)
	mark = func(v *ir.Value) {
		if live[v] {
			return
		}
		live[v] = true
		for _, a := range v.Args {
			mark(a)
		}
	}
	for _, v := range g.Values {
		if _, replaced := r.repl[v]; !replaced && !r.consumed[v] {
			mark(v)
		}
	}
	for _, o := range g.Outputs {
		mark(o.Value)
	}
	var kept []*ir.Value
	for _, v := range g.Values {
		if live[v] {
			kept = append(kept, v)
		}
	}
	g.Values = topoOrder(kept)
	g.Renumber()
	return nil
}

// topoOrder returns vs ordered so that args come before their readers,
// keeping the given order wherever it already allows: a value moves only as
// far forward as its first reader needs.
func topoOrder(vs []*ir.Value) []*ir.Value {
	done := make(map[*ir.Value]bool, len(vs))
	out := make([]*ir.Value, 0, len(vs))
	var visit func(v *ir.Value)
	visit = func(v *ir.Value) {
		if done[v] {
			return
		}
		done[v] = true
		for _, a := range v.Args {
			visit(a)
		}
		out = append(out, v)
	}
	for _, v := range vs {
		visit(v)
	}
	return out
}

// users lists, for each value ID, the values that read it (once per value,
// in graph order) and whether it is a graph output.
type useInfo struct {
	users  [][]*ir.Value
	output []bool
}

func uses(g *ir.Graph) useInfo {
	u := useInfo{users: make([][]*ir.Value, len(g.Values)), output: make([]bool, len(g.Values))}
	for _, v := range g.Values {
		for i, a := range v.Args {
			if !slices.Contains(v.Args[:i], a) {
				u.users[a.ID] = append(u.users[a.ID], v)
			}
		}
	}
	for _, o := range g.Outputs {
		u.output[o.Value.ID] = true
	}
	return u
}

// only reports whether v's single reader is user and v is not an output.
func (u useInfo) only(v, user *ir.Value) bool {
	return !u.output[v.ID] && len(u.users[v.ID]) == 1 && u.users[v.ID][0] == user
}

// isWeightExpr reports whether v is a weight or a build-time expression of
// weights (a concat of them), which Lower evaluates at build time.
func isWeightExpr(v *ir.Value) bool {
	return v.Op == ir.OpWeight || (v.Op == ir.OpConcat && allWeights(v.Args))
}

// isLastDimRange reports whether v is a section of its arg's last dim
// starting at start with n elements.
func isLastDimRange(v *ir.Value, start, n int64) bool {
	return v.Op == ir.OpSection && v.Attr().Int("start") == start && v.Attr().Int("size") == n
}

// attrsWithout returns a's attributes except the listed keys.
func attrsWithout(a ir.Attrs, keys ...string) []ir.Attr {
	var out []ir.Attr
	for _, at := range a {
		if !slices.Contains(keys, at.Key) {
			out = append(out, at)
		}
	}
	return out
}
