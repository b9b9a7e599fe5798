package passes

import (
	"strings"

	"github.com/inference-pio/pio/ir"
)

// FuseSiblingMatMuls merges sibling matmuls, all those that read the same
// activation x with a weight (or build-time weight expression) of the
// first one's dtype, whatever they compute: q, k and v projections, gate
// and up, GLM's q_a and kv_a. They become one fused_matmul over their
// weights concatenated along the output dim, with `sections` recording
// each block's width; each old result becomes a `section` of the fused
// one. The concat is a weight expression, so Lower folds it into one
// engine tensor at build time (named after its parts:
// "p.q_proj.weight+k_proj.weight+v_proj.weight") and the runtime never
// concatenates. GQA needs nothing special: blocks may differ in width.
// Matmuls whose weights differ in dtype from the first are left alone.
// Readers of the sections are fused further by fuse-swiglu and
// fuse-attn-input.
func FuseSiblingMatMuls(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	concats := map[string]*ir.Value{} // one engine tensor per fused name
	for _, x := range g.Values {
		var group []*ir.Value
		for _, m := range u.users[x.ID] {
			if m.Op == ir.OpMatMul && m.Args[0] == x && isWeightExpr(m.Args[1]) &&
				(len(group) == 0 || group[0].Args[1].DType == m.Args[1].DType) {
				group = append(group, m)
			}
		}
		if len(group) < 2 {
			continue
		}
		var ws []*ir.Value
		var names []string
		var sections []int64
		for _, m := range group {
			ws = append(ws, m.Args[1])
			names = append(names, m.Args[1].Name())
			sections = append(sections, int64(m.Args[1].Shape[0]))
		}
		name := fusedName(names)
		w, ok := concats[name]
		if !ok {
			w = r.add(ir.OpConcat, ws, ir.Int("axis", 0), ir.Str("name", name))
			concats[name] = w
		}
		f := r.add(ir.OpFusedMatMul, []*ir.Value{x, w}, ir.Ints("sections", sections...))
		var start int64
		for i, m := range group {
			r.replace(m, r.add(ir.OpSection, []*ir.Value{f}, ir.Int("start", start), ir.Int("size", sections[i])))
			start += sections[i]
		}
	}
	return r.finish()
}

// fusedName names a concatenated weight after its parts: the parts' common
// prefix up to a '.', then their remainders joined by '+'.
func fusedName(names []string) string {
	prefix := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	prefix = prefix[:strings.LastIndex(prefix, ".")+1]
	rest := make([]string, len(names))
	for i, n := range names {
		rest[i] = n[len(prefix):]
	}
	return prefix + strings.Join(rest, "+")
}
