package passes

import "github.com/inference-pio/pio/ir"

// FuseSwiGLU moves the SwiGLU activation into the epilogue of a fused
// gate/up matmul: mul(silu(section 0 of F), section 1 of F), where F is a
// fused_matmul with exactly two equal sections (gate, then up) and no
// activation or residual yet, becomes F with act="swiglu", which writes
// [.., I] instead of [.., 2I] and never stores gate or up. Either mul
// operand order matches. It runs after fuse-sibling-matmuls, which makes F.
func FuseSwiGLU(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, m := range g.Values {
		if m.Op != ir.OpMul {
			continue
		}
		for _, order := range [][2]int{{0, 1}, {1, 0}} {
			act, up := m.Args[order[0]], m.Args[order[1]]
			if act.Op != ir.OpSiLU || !u.only(act, m) || act.Args[0].Op != ir.OpSection || up.Op != ir.OpSection {
				continue
			}
			gate := act.Args[0]
			f := gate.Args[0]
			if f.Op != ir.OpFusedMatMul || up.Args[0] != f {
				continue
			}
			fa := f.Attr()
			s := fa.Ints("sections")
			if len(s) != 2 || s[0] != s[1] || fa.String("act") != "none" || fa.Bool("residual") ||
				gate.Attr().Int("start") != 0 || up.Attr().Int("start") != s[0] ||
				!u.only(gate, act) || !u.only(up, m) || len(u.users[f.ID]) != 2 || u.output[f.ID] {
				continue
			}
			attrs := append(attrsWithout(f.Attrs, "act"), ir.Str("act", "swiglu"))
			r.replace(m, r.add(ir.OpFusedMatMul, f.Args, attrs...), act, gate, up, f)
			break
		}
	}
	return r.finish()
}
