package passes

import "github.com/inference-pio/pio/ir"

// FuseMoERouting moves an MoE's routing into it, making the dispatch one
// step: moe(x, ids, w, gate_up, down) whose ids = router_topk(L [, bias])
// and w = router_weights(L, ids) read the router logits L = matmul(x, R) of
// the same x becomes moe_routed(x, R, gate_up, down [, bias]), when the
// logits, ids and weights have no other readers and are not outputs and
// both router ops agree on the scoring. Permutation, grouped expert GEMMs and the weighted
// combine are already inside moe; this moves routing in with them. The
// norm before it and the residual add after it join later
// (fuse-norm-matmul, fuse-residual).
func FuseMoERouting(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, m := range g.Values {
		if m.Op != ir.OpMoE {
			continue
		}
		x, ids, w := m.Args[0], m.Args[1], m.Args[2]
		if ids.Op != ir.OpRouterTopK || w.Op != ir.OpRouterWeights || w.Args[1] != ids {
			continue
		}
		l := ids.Args[0]
		if w.Args[0] != l || l.Op != ir.OpMatMul || l.Args[0] != x || !isWeightExpr(l.Args[1]) ||
			ids.Attr().String("scoring") != w.Attr().String("scoring") ||
			!u.only(w, m) || u.output[ids.ID] || len(u.users[ids.ID]) != 2 || u.output[l.ID] || len(u.users[l.ID]) != 2 {
			continue
		}
		args := []*ir.Value{x, l.Args[1], m.Args[3], m.Args[4]}
		attrs := mergeAttrs(ids.Attrs, w.Attrs, m.Attrs)
		if len(ids.Args) == 2 {
			args = append(args, ids.Args[1])
			attrs = append(attrs, ir.Int("bias", 1))
		}
		r.replace(m, r.add(ir.OpMoERouted, args, attrs...), ids, w, l)
	}
	return r.finish()
}

// mergeAttrs joins attribute lists; a key keeps its first value.
func mergeAttrs(lists ...ir.Attrs) []ir.Attr {
	var out []ir.Attr
	seen := map[string]bool{}
	for _, l := range lists {
		for _, a := range l {
			if !seen[a.Key] {
				seen[a.Key] = true
				out = append(out, a)
			}
		}
	}
	return out
}
