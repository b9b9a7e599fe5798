package passes

import "github.com/inference-pio/pio/ir"

// FuseAttnInput folds the attention input path into one qkv_attention step
// that reads q, k and v in place from one fused projection row: per-head
// q/k RMSNorm (when present), RoPE, the KV-cache write and the attention
// itself. It matches
//
//	attention(rope(norm?(reshape(section(F, 0, nq))), pos),
//	          rope(norm?(reshape(section(F, nq, nk))), pos),
//	          reshape(section(F, nq+nk, nv)))
//
// where F is [T, nq+nk+nv] (made by fuse-qkv), q and k share the rope
// attributes and positions and either both have norms with the same eps or
// neither has, and every intermediate has no other reader and is not an
// output. Qwen3-Next's gated attention also matches: q is the first half
// of each head's [query | gate] rows, section(F, 0, Hq·2D) viewed as
// [T, Hq, 2D] and cut by a section, and the attention's only
// reader is mul(attention, sigmoid(gate half)); then qkv_attention{gate=1}
// replaces the mul. Anything else is left as it is.
func FuseAttnInput(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, at := range g.Values {
		if at.Op != ir.OpAttention {
			continue
		}
		q, k, v := at.Args[0], at.Args[1], at.Args[2]
		if q.Op != ir.OpRoPE || k.Op != ir.OpRoPE || q.Args[1] != k.Args[1] || !q.Attrs.Equal(k.Attrs) ||
			!u.only(q, at) || !u.only(k, at) || !u.only(v, at) {
			continue
		}
		var chain []*ir.Value // consumed intermediates
		var norms []*ir.Value
		var gated *ir.Value // Qwen3-Next: the mul by sigmoid(gate) that replaces at
		// block follows rope -> norm? -> reshape -> section and returns the
		// section, or nil.
		block := func(x, reader *ir.Value, roped bool) *ir.Value {
			if roped {
				chain = append(chain, x)
				reader, x = x, x.Args[0]
				if !u.only(x, reader) {
					return nil
				}
				if x.Op == ir.OpRMSNorm {
					norms = append(norms, x)
					chain = append(chain, x)
					reader, x = x, x.Args[0]
					if !u.only(x, reader) {
						return nil
					}
				}
			}
			if roped && reader.Args[0] == x && x.Shape[2]*2 == lastDimOf(x.Args[0]) && isLastDimRange(x, 0, int64(x.Shape[2])) {
				// Gated attention: q is the first half of each head's
				// [query | gate] rows; the gate half must feed only
				// mul(attention, sigmoid(gate)).
				if gated = gateOf(u, at, x); gated == nil {
					return nil
				}
				chain = append(chain, x)
				reader, x = x, x.Args[0]
				if len(u.users[x.ID]) != 2 || u.output[x.ID] {
					return nil
				}
			} else if !u.only(x, reader) {
				return nil
			}
			if x.Op != ir.OpReshape {
				return nil
			}
			chain = append(chain, x)
			reader, x = x, x.Args[0]
			if x.Op != ir.OpSection || !u.only(x, reader) {
				return nil
			}
			chain = append(chain, x)
			return x
		}
		sq, sk, sv := block(q, at, true), block(k, at, true), block(v, at, false)
		if sq == nil || sk == nil || sv == nil {
			continue
		}
		f := sq.Args[0]
		nq, nk, nv := sq.Attr().Int("size"), sk.Attr().Int("size"), sv.Attr().Int("size")
		if sk.Args[0] != f || sv.Args[0] != f || len(f.Shape) != 2 || f.Shape[0] != ir.T ||
			sq.Attr().Int("start") != 0 || sk.Attr().Int("start") != nq || sv.Attr().Int("start") != nq+nk ||
			int64(f.Shape[1]) != nq+nk+nv {
			continue
		}
		if len(norms) != 0 && (len(norms) != 2 || !norms[0].Attrs.Equal(norms[1].Attrs)) {
			continue
		}
		d, dv := int64(q.Shape[2]), int64(v.Shape[2])
		dq := d
		if gated != nil {
			dq = 2 * d
			sig := gated.Args[0]
			if sig == at {
				sig = gated.Args[1]
			}
			chain = append(chain, at, sig, sig.Args[0])
		}
		if nq != int64(q.Shape[1])*dq || nk != int64(k.Shape[1])*d || nv != int64(v.Shape[1])*dv {
			continue
		}
		rope, attn := q.Attr(), at.Attr()
		attrs := []ir.Attr{
			ir.Ints("heads", int64(q.Shape[1]), int64(k.Shape[1])), ir.Int("head_dim", d),
			ir.Float("theta", rope.Float("theta")), ir.Int("rotary_dims", rope.Int("rotary_dims")),
			ir.Str("style", rope.String("style")),
			ir.Int("cache", attn.Int("cache")), ir.Float("scale", attn.Float("scale")),
		}
		if dv != d {
			attrs = append(attrs, ir.Int("v_head_dim", dv))
		}
		target := at
		if gated != nil {
			attrs = append(attrs, ir.Int("gate", 1))
			target = gated
		}
		args := []*ir.Value{f, q.Args[1]}
		if len(norms) == 2 {
			args = append(args, norms[0].Args[1], norms[1].Args[1])
			attrs = append(attrs, ir.Float("eps", norms[0].Attr().Float("eps")))
			if norms[0].Attr().Bool("unit_offset") {
				attrs = append(attrs, ir.Int("unit_offset", 1))
			}
		}
		r.replace(target, r.add(ir.OpQKVAttention, args, attrs...), chain...)
	}
	return r.finish()
}

// isLastDimRange reports whether v is a section of its arg's last dim
// starting at start with n elements.
func isLastDimRange(v *ir.Value, start, n int64) bool {
	return v.Op == ir.OpSection && v.Attr().Int("start") == start && v.Attr().Int("size") == n
}

func lastDimOf(v *ir.Value) ir.Dim { return v.Shape.Last() }

// gateOf returns mul(at, sigmoid(gate)) when at's only reader is that mul
// and gate is the second half of the rows q (a range of x's arg) is the
// first half of, with no other readers; else nil.
func gateOf(u useInfo, at, q *ir.Value) *ir.Value {
	if len(u.users[at.ID]) != 1 || u.output[at.ID] {
		return nil
	}
	m := u.users[at.ID][0]
	if m.Op != ir.OpMul {
		return nil
	}
	s := m.Args[1]
	if m.Args[1] == at {
		s = m.Args[0]
	}
	if s.Op != ir.OpSigmoid || !u.only(s, m) {
		return nil
	}
	g := s.Args[0]
	d := int64(q.Shape.Last())
	if g.Args == nil || len(g.Args) != 1 || g.Args[0] != q.Args[0] || !isLastDimRange(g, d, d) || !u.only(g, s) {
		return nil
	}
	return m
}
