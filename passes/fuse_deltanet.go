package passes

import "github.com/inference-pio/pio/ir"

// FuseDeltaNet folds the gated RMSNorm of a Gated DeltaNet mixer into the
// delta-rule step: mul(rms_norm(o, w), silu(z)), with o a gated_delta_rule
// read only by that norm (plain weight, no unit offset), the norm and the
// SiLU read only by the mul, becomes deltanet_core(q, k, v, g, beta, z, w)
// with the rule's attributes and the norm's eps (z read in place from the
// projected row, zrow, where it is a grouped section of it). Either mul
// operand order matches. The rule's output, the normalised rows and silu(z) never reach
// memory.
//
// It also puts what feeds the rule into one deltanet_prep that reads the
// projected row in place (see fusePrep): the q/k/v/z and b/a sections, the
// concat, the causal conv + SiLU, the decay and the sigmoid.
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
				norm.Attr().Bool("unit_offset") {
				continue
			}
			o := norm.Args[0]
			if o.Op != ir.OpGatedDeltaRule || !u.only(o, norm) || !act.Shape.Equal(o.Shape) {
				continue
			}
			z := act.Args[0]
			attrs := append(attrsWithout(o.Attrs, "eps"), ir.Float("eps", norm.Attr().Float("eps")))
			// z read in place: reshape(section(reshape(row[off:]) [T, Hk, 2dk+2r·dv], 2dk+r·dv, r·dv)).
			hk, dk, hv, dv := int64(o.Args[0].Shape[1]), int64(o.Args[0].Shape[2]), int64(o.Shape[1]), int64(o.Shape[2])
			if row, off, p, st, n, ok := grouped(z); ok && hk > 0 && int64(p.Shape[1]) == hk &&
				int64(p.Shape[2]) == 2*dk+2*hv/hk*dv && st == 2*dk+hv/hk*dv && n == hv/hk*dv {
				z = row
				attrs = append(attrs, ir.Int("zrow", off))
			}
			args := append(append([]*ir.Value{}, o.Args...), z, norm.Args[1])
			r.replace(m, r.add(ir.OpDeltaNetCore, args, attrs...), norm, act, o)
			break
		}
	}
	fusePrep(g, r, u)
	return r.finish()
}

// grouped matches reshape(section(P, start, size)) with P = reshape(X) of
// shape [T, heads, group], X a value [T, W] or a section of one; it
// returns the row value, the offset of X in its row, P, and start, size.
func grouped(v *ir.Value) (row *ir.Value, off int64, p *ir.Value, start, n int64, ok bool) {
	if v.Op != ir.OpReshape || v.Args[0].Op != ir.OpSection {
		return
	}
	sl := v.Args[0]
	p = sl.Args[0]
	if p.Op != ir.OpReshape || len(p.Shape) != 3 || p.Shape[0] != ir.T || len(p.Args[0].Shape) != 2 || p.Args[0].Shape[0] != ir.T {
		return
	}
	row = p.Args[0]
	if row.Op == ir.OpSection {
		off, row = row.Attr().Int("start"), row.Args[0]
	}
	if len(row.Shape) != 2 || row.Shape[0] != ir.T {
		return
	}
	return row, off, p, sl.Attr().Int("start"), sl.Attr().Int("size"), true
}

// fusePrep finds conv1d_causal{silu}(concat(q, k, v)) over the grouped
// qkvz projection and the gates decay(a), sigmoid(b) over the grouped ba
// projection of the same row, and puts them into one deltanet_prep whose
// blocks replace them as sections.
func fusePrep(g *ir.Graph, r *rewriter, u useInfo) {
	type gate struct{ sig, dec *ir.Value }
	for _, conv := range g.Values {
		if conv.Op != ir.OpConv1DCausal || conv.Attr().String("activation") != "silu" {
			continue
		}
		cc := conv.Args[0]
		if cc.Op != ir.OpConcat || cc.Attr().Int("axis") != 1 || len(cc.Args) != 3 || !u.only(cc, conv) {
			continue
		}
		row, qoff, p, qs, dk, ok := grouped(cc.Args[0])
		if !ok || qs != 0 {
			continue
		}
		row2, koff, p2, ks, kn, ok2 := grouped(cc.Args[1])
		row3, voff, p3, vs, rdv, ok3 := grouped(cc.Args[2])
		hk := int64(p.Shape[1])
		if !ok2 || !ok3 || row2 != row || row3 != row || p2 != p || p3 != p || koff != qoff || voff != qoff ||
			ks != dk || kn != dk || vs != 2*dk || int64(p.Shape[2]) != 2*dk+2*rdv {
			continue
		}
		// The gates: sigmoid(b) and decay(a) over reshape(section(reshape(row[ba:]))).
		var gt gate
		var baOff, rr int64
		for _, d := range g.Values {
			if d.Op != ir.OpDeltaNetDecay {
				continue
			}
			drow, doff, dp, as, an, ok := grouped(d.Args[0])
			if !ok || drow != row || int64(dp.Shape[1]) != hk || as != an || int64(dp.Shape[2]) != 2*an {
				continue
			}
			for _, s := range u.users[dp.ID] {
				for _, sv := range u.users[s.ID] {
					for _, sg := range u.users[sv.ID] {
						if sg.Op == ir.OpSigmoid && isLastDimRange(s, 0, an) &&
							sv.Op == ir.OpReshape && sg.Shape.Equal(d.Shape) {
							gt, baOff, rr = gate{sg, d}, doff, an
						}
					}
				}
			}
			if gt.dec != nil {
				break
			}
		}
		if gt.dec == nil || rdv%rr != 0 {
			continue
		}
		hv, dv := hk*rr, rdv/rr
		c := 2*hk*dk + hv*dv
		prep := r.add(ir.OpDeltaNetPrep, []*ir.Value{row, conv.Args[1], gt.dec.Args[1], gt.dec.Args[2]},
			ir.Int("cache", conv.Attr().Int("cache")), ir.Ints("heads", hk, hv), ir.Ints("dims", dk, dv),
			ir.Int("qkvz", qoff), ir.Int("ba", baOff))
		if prep == nil {
			return
		}
		r.replace(conv, r.add(ir.OpSection, []*ir.Value{prep}, ir.Int("start", 0), ir.Int("size", c)), cc)
		r.replace(gt.dec, r.add(ir.OpSection, []*ir.Value{prep}, ir.Int("start", c), ir.Int("size", hv)))
		r.replace(gt.sig, r.add(ir.OpSection, []*ir.Value{prep}, ir.Int("start", c+hv), ir.Int("size", hv)))
	}
}
