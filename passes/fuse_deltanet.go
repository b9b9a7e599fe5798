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

// fusePrep puts what feeds each delta rule into one deltanet_prep
// (matchDeltaNetPrep) whose blocks replace the conv and the gates as
// sections.
func fusePrep(g *ir.Graph, r *rewriter, u useInfo) {
	for _, conv := range g.Values {
		if m, ok := matchDeltaNetPrep(g, u, conv); ok {
			m.rewrite(r)
		}
	}
}

// deltaNetPrep is what feeds a delta rule, read from one projected row: the
// causal conv + SiLU over concat(q, k, v) of the grouped qkvz projection
// and the gates decay(a), sigmoid(b) over the grouped ba projection.
type deltaNetPrep struct {
	conv, concat   *ir.Value
	decay, sigmoid *ir.Value
	row            *ir.Value
	qkvz, ba       int64 // offsets of the two projections in row
	hk, hv, dk, dv int64 // key and value heads and head dims
}

// matchDeltaNetPrep matches conv1d_causal{silu}(concat(q, k, v)) with q, k
// and v the [0, dk), [dk, 2dk), [2dk, 2dk+r·dv) blocks of the grouped qkvz
// projection P [T, Hk, 2dk+2r·dv] of a row, the concat read only by the
// conv, and the gates of the same row (matchPrepGates).
func matchDeltaNetPrep(g *ir.Graph, u useInfo, conv *ir.Value) (deltaNetPrep, bool) {
	if conv.Op != ir.OpConv1DCausal || conv.Attr().String("activation") != "silu" {
		return deltaNetPrep{}, false
	}
	cc := conv.Args[0]
	if cc.Op != ir.OpConcat || cc.Attr().Int("axis") != 1 || len(cc.Args) != 3 || !u.only(cc, conv) {
		return deltaNetPrep{}, false
	}
	row, qoff, p, qs, dk, ok := grouped(cc.Args[0])
	if !ok || qs != 0 {
		return deltaNetPrep{}, false
	}
	row2, koff, p2, ks, kn, ok2 := grouped(cc.Args[1])
	row3, voff, p3, vs, rdv, ok3 := grouped(cc.Args[2])
	hk := int64(p.Shape[1])
	if !ok2 || !ok3 || row2 != row || row3 != row || p2 != p || p3 != p || koff != qoff || voff != qoff ||
		ks != dk || kn != dk || vs != 2*dk || int64(p.Shape[2]) != 2*dk+2*rdv {
		return deltaNetPrep{}, false
	}
	dec, sig, baOff, rr, ok := matchPrepGates(g, u, row, hk)
	if !ok || rdv%rr != 0 {
		return deltaNetPrep{}, false
	}
	return deltaNetPrep{
		conv: conv, concat: cc, decay: dec, sigmoid: sig, row: row,
		qkvz: qoff, ba: baOff, hk: hk, hv: hk * rr, dk: dk, dv: rdv / rr,
	}, true
}

// matchPrepGates finds the gates over row's grouped ba projection
// P [T, Hk, 2r]: the first decay(a) in graph order with
// a = reshape(section(P, r, r)) that has a sigmoid(reshape(section(P, 0, r)))
// of its shape beside it. It returns them, P's offset in row and r.
func matchPrepGates(g *ir.Graph, u useInfo, row *ir.Value, hk int64) (dec, sig *ir.Value, off, r int64, ok bool) {
	for _, d := range g.Values {
		if d.Op != ir.OpDeltaNetDecay {
			continue
		}
		drow, doff, dp, as, an, ok := grouped(d.Args[0])
		if !ok || drow != row || int64(dp.Shape[1]) != hk || as != an || int64(dp.Shape[2]) != 2*an {
			continue
		}
		if s := sigmoidOfFirstBlock(u, dp, an, d.Shape); s != nil {
			return d, s, doff, an, true
		}
	}
	return nil, nil, 0, 0, false
}

// sigmoidOfFirstBlock returns a sigmoid(reshape(section(p, 0, n))) of the
// given shape (the last such among p's readers), or nil.
func sigmoidOfFirstBlock(u useInfo, p *ir.Value, n int64, shape ir.Shape) *ir.Value {
	var sig *ir.Value
	for _, s := range u.users[p.ID] {
		if !isLastDimRange(s, 0, n) {
			continue
		}
		for _, sv := range u.users[s.ID] {
			if sv.Op != ir.OpReshape {
				continue
			}
			for _, sg := range u.users[sv.ID] {
				if sg.Op == ir.OpSigmoid && sg.Shape.Equal(shape) {
					sig = sg
				}
			}
		}
	}
	return sig
}

// rewrite replaces the conv and the gates with sections of one
// deltanet_prep: [T, 2·Hk·dk + Hv·dv] conv output, then decay and sigmoid
// [T, Hv] each.
func (m deltaNetPrep) rewrite(r *rewriter) {
	c := 2*m.hk*m.dk + m.hv*m.dv
	prep := r.add(ir.OpDeltaNetPrep, []*ir.Value{m.row, m.conv.Args[1], m.decay.Args[1], m.decay.Args[2]},
		ir.Int("cache", m.conv.Attr().Int("cache")), ir.Ints("heads", m.hk, m.hv), ir.Ints("dims", m.dk, m.dv),
		ir.Int("qkvz", m.qkvz), ir.Int("ba", m.ba))
	r.replace(m.conv, r.add(ir.OpSection, []*ir.Value{prep}, ir.Int("start", 0), ir.Int("size", c)), m.concat)
	r.replace(m.decay, r.add(ir.OpSection, []*ir.Value{prep}, ir.Int("start", c), ir.Int("size", m.hv)))
	r.replace(m.sigmoid, r.add(ir.OpSection, []*ir.Value{prep}, ir.Int("start", c+m.hv), ir.Int("size", m.hv)))
}
