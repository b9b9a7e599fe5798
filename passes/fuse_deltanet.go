package passes

import "github.com/inference-pio/pio/ir"

// FuseDeltaNet folds the gated RMSNorm of a Gated DeltaNet mixer into the
// delta-rule step: mul(rms_norm(o, w), silu(z)), with o a gated_delta_rule
// read only by that norm (plain weight, no unit offset), the norm and the
// SiLU read only by the mul, becomes deltanet_core(q, k, v, g, beta, z, w)
// with the rule's attributes and the norm's eps. Either mul operand order
// matches. The rule's output, the normalised rows and silu(z) never reach
// memory.
func FuseDeltaNet(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, m := range g.Values {
		if m.Op != ir.OpMul {
			continue
		}
		for _, order := range [][2]int{{0, 1}, {1, 0}} {
			norm, act := m.Args[order[0]], m.Args[order[1]]
			if norm.Op != ir.OpRMSNorm || act.Op != ir.OpSiLU || !u.only(norm, m) || !u.only(act, m) ||
				norm.Attrs.Int("unit_offset", 0) != 0 {
				continue
			}
			o := norm.Args[0]
			if o.Op != ir.OpGatedDeltaRule || !u.only(o, norm) || !act.Shape.Equal(o.Shape) {
				continue
			}
			args := append(append([]*ir.Value{}, o.Args...), act.Args[0], norm.Args[1])
			attrs := append(attrsWithout(o.Attrs, "eps"), ir.Float("eps", norm.Attrs.Float("eps", 0)))
			r.replace(m, r.add(ir.OpDeltaNetCore, args, attrs...), norm, act, o)
			break
		}
	}
	return r.finish()
}
