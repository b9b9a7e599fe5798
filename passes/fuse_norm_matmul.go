package passes

import (
	"slices"

	"github.com/inference-pio/pio/ir"
)

// FuseNormMatMul computes an RMSNorm in the prologue of the GEMMs that read
// it: when every reader of rms_norm(x, w) uses it as the activation of a
// matmul, or of a fused_matmul or moe_routed without a norm, and the norm
// is not a graph output, each reader takes x and w with norm=1 (eps,
// unit_offset), and the normalised tensor is never stored. Run after
// fuse-sibling-matmuls, the norm has one reader per block, so it is
// computed once.
func FuseNormMatMul(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, n := range g.Values {
		if n.Op != ir.OpRMSNorm || u.output[n.ID] || len(u.users[n.ID]) == 0 {
			continue
		}
		ok := true
		for _, m := range u.users[n.ID] {
			ok = ok && normArgs(m, n) != nil
		}
		if !ok {
			continue
		}
		for _, m := range u.users[n.ID] {
			attrs := append(attrsWithout(m.Attrs, "norm", "eps", "unit_offset"), ir.Int("norm", 1), ir.Float("eps", n.Attr().Float("eps")))
			if n.Attr().Bool("unit_offset") {
				attrs = append(attrs, ir.Int("unit_offset", 1))
			}
			op := m.Op
			if op == ir.OpMatMul {
				op = ir.OpFusedMatMul
			}
			r.replace(m, r.add(op, normArgs(m, n), attrs...), n)
		}
	}
	return r.finish()
}

// normArgs returns the args of reader m of norm n with the norm moved into
// m's prologue, or nil when m cannot take it: m must read n as its
// activation (arg 0) only and have no norm yet.
func normArgs(m, n *ir.Value) []*ir.Value {
	if m.Args[0] != n || slices.Contains(m.Args[1:], n) {
		return nil
	}
	x, w := n.Args[0], n.Args[1]
	switch m.Op {
	case ir.OpMatMul:
		return []*ir.Value{x, m.Args[1], w}
	case ir.OpFusedMatMul: // x, W [, residual]
		if m.Attr().Bool("norm") {
			return nil
		}
		return append([]*ir.Value{x, m.Args[1], w}, m.Args[2:]...)
	case ir.OpMoERouted: // x, router, gate_up, down [, bias] [, residual]
		if m.Attr().Bool("norm") {
			return nil
		}
		bias, _, res, _ := ir.MoERoutedLayout(m.Attr())
		args := []*ir.Value{x, m.Args[1], m.Args[2], m.Args[3]}
		if bias >= 0 {
			args = append(args, m.Args[bias])
		}
		args = append(args, w)
		if res >= 0 {
			args = append(args, m.Args[res])
		}
		return args
	}
	return nil
}
