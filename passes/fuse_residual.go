package passes

import "github.com/inference-pio/pio/ir"

// FuseResidual moves a residual add into the epilogue of the GEMM that
// produces one of its operands: add(h, m) with m a matmul, or a
// fused_matmul or moe_routed (the residual is the last arg of both) without
// a residual, read only by this add and not an output, becomes
// fused_matmul(..., h){residual=1}. The second operand is tried first (model
// code writes h + block(h)).
func FuseResidual(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, a := range g.Values {
		if a.Op != ir.OpAdd {
			continue
		}
		for _, i := range []int{1, 0} {
			m, h := a.Args[i], a.Args[1-i]
			if !u.only(m, a) || h == m {
				continue
			}
			var args []*ir.Value
			var attrs []ir.Attr
			switch {
			case m.Op == ir.OpMatMul:
				args = []*ir.Value{m.Args[0], m.Args[1]}
			case (m.Op == ir.OpFusedMatMul || m.Op == ir.OpMoERouted) && !m.Attr().Bool("residual"):
				args = append([]*ir.Value(nil), m.Args...)
				attrs = attrsWithout(m.Attrs, "residual")
			default:
				continue
			}
			args = append(args, h)
			attrs = append(attrs, ir.Int("residual", 1))
			op := m.Op
			if op == ir.OpMatMul {
				op = ir.OpFusedMatMul
			}
			r.replace(a, r.add(op, args, attrs...), m)
			break
		}
	}
	return r.finish()
}
