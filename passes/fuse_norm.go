package passes

import "github.com/inference-pio/pio/ir"

// FuseNormMatMul computes an RMSNorm in the prologue of the GEMMs that read
// it: when every reader of rms_norm(x, w) uses it as the activation of a
// matmul or of a fused_matmul without a norm, and the norm is not a graph
// output, each reader becomes fused_matmul(x, W, w, ...){norm=1, eps,
// unit_offset} and the normalised tensor is never stored. Run after
// fuse-qkv, the norm has one reader per block, so it is computed once.
func FuseNormMatMul(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, n := range g.Values {
		if n.Op != ir.OpRMSNorm || u.output[n.ID] || len(u.users[n.ID]) == 0 {
			continue
		}
		ok := true
		for _, m := range u.users[n.ID] {
			switch {
			case m.Op == ir.OpMatMul && m.Args[0] == n && m.Args[1] != n:
			case m.Op == ir.OpFusedMatMul && m.Args[0] == n && m.Attrs.Int("norm", 0) == 0 && !argIn(n, m.Args[1:]):
			default:
				ok = false
			}
		}
		if !ok {
			continue
		}
		for _, m := range u.users[n.ID] {
			attrs := append(attrsWithout(m.Attrs, "norm", "eps", "unit_offset"), ir.Int("norm", 1), ir.Float("eps", n.Attrs.Float("eps", 0)))
			if uo := n.Attrs.Int("unit_offset", 0); uo != 0 {
				attrs = append(attrs, ir.Int("unit_offset", uo))
			}
			args := []*ir.Value{n.Args[0], m.Args[1], n.Args[1]}
			args = append(args, m.Args[2:]...) // a residual, if any
			r.replace(m, r.add(ir.OpFusedMatMul, args, attrs...), n)
		}
	}
	return r.finish()
}

func argIn(v *ir.Value, args []*ir.Value) bool {
	for _, a := range args {
		if a == v {
			return true
		}
	}
	return false
}
