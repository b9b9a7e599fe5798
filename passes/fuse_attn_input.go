package passes

import "github.com/inference-pio/pio/ir"

// FuseAttnInput folds the attention input path into one qkv_attention step
// that reads q, k and v in place from one fused projection row: per-head
// q/k RMSNorm (when present), RoPE, the KV-cache write and the attention
// itself. It matches (matchAttnInput)
//
//	attention(rope(norm?(reshape(section(F, 0, nq))), pos),
//	          rope(norm?(reshape(section(F, nq, nk))), pos),
//	          reshape(section(F, nq+nk, nv)))
//
// where F is [T, nq+nk+nv] (made by fuse-sibling-matmuls), q and k share
// the rope attributes and positions and either both have norms with the
// same eps or neither has, and every intermediate has no other reader and
// is not an output. Qwen3-Next's gated attention also matches
// (matchGatedAttnInput): q is the first half of each head's [query | gate]
// rows, section(F, 0, Hq·2D) viewed as [T, Hq, 2D] and cut by a section,
// and the attention's only reader is mul(attention, sigmoid(gate half));
// then qkv_attention{gate=1} replaces the mul. Anything else is left as it
// is.
func FuseAttnInput(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, at := range g.Values {
		if at.Op != ir.OpAttention {
			continue
		}
		m, ok := matchAttnInput(u, at)
		if !ok {
			m, ok = matchGatedAttnInput(u, at)
		}
		if ok {
			m.rewrite(r)
		}
	}
	return r.finish()
}

// attnInput is an attention whose q, k and v are read from one fused
// projection row, as the matchers found it.
type attnInput struct {
	at      *ir.Value // attention(q, k, v)
	q, k, v rowBlock
	row     *ir.Value // F: [T, nq+nk+nv]
	// Gated attention only: gate = mul(at, sigmoid), sigmoid =
	// sigmoid(gateHalf), gateHalf the gate half of q's rows.
	gate, sigmoid, gateHalf *ir.Value
}

// rowBlock is the path of q, k or v from the fused row to the attention,
// rope?(norm?(half?(view))) with view = reshape(sec) [T, heads, D] and
// sec = section(F, start, size); half (gated q only) is the query half of
// view's [query | gate] rows. Absent steps are nil.
type rowBlock struct {
	rope, norm, half, view, sec *ir.Value
}

// matchAttnInput matches the plain case: q and k are ropes over norm?(view).
func matchAttnInput(u useInfo, at *ir.Value) (attnInput, bool) {
	m, qx, kx, ok := matchRopes(u, at)
	if !ok || !m.q.fromRow(u, qx) || !m.k.fromRow(u, kx) || !m.v.fromRow(u, at.Args[2]) {
		return attnInput{}, false
	}
	return m, m.oneRow()
}

// matchGatedAttnInput matches Qwen3-Next's gated attention: q's rope reads
// norm?(section(view, 0, D)), view [T, Hq, 2D] read only by that section
// and the gate half section(view, D, D), and the attention's only reader is
// mul(at, sigmoid(gate half)).
func matchGatedAttnInput(u useInfo, at *ir.Value) (attnInput, bool) {
	m, half, kx, ok := matchRopes(u, at)
	if !ok || half.Op != ir.OpSection || len(half.Shape) != 3 {
		return attnInput{}, false
	}
	d := int64(half.Shape[2])
	view := half.Args[0]
	if !isLastDimRange(half, 0, d) || int64(view.Shape.Last()) != 2*d ||
		len(u.users[view.ID]) != 2 || u.output[view.ID] {
		return attnInput{}, false
	}
	m.q.half = half
	if m.gate, m.sigmoid, ok = matchGate(u, at, half); !ok {
		return attnInput{}, false
	}
	m.gateHalf = m.sigmoid.Args[0]
	if !m.q.fromRow(u, view) || !m.k.fromRow(u, kx) || !m.v.fromRow(u, at.Args[2]) {
		return attnInput{}, false
	}
	return m, m.oneRow()
}

// matchRopes checks what both cases share: q and k are ropes with the same
// attributes and positions, each over norm?(x) with q and k normed alike
// or neither, and q, k, v and every step down to x have no other reader.
// It returns the match with at, the ropes and the norms filled in, and the
// values under q's and k's path so far.
func matchRopes(u useInfo, at *ir.Value) (m attnInput, qx, kx *ir.Value, ok bool) {
	q, k, v := at.Args[0], at.Args[1], at.Args[2]
	if q.Op != ir.OpRoPE || k.Op != ir.OpRoPE || q.Args[1] != k.Args[1] || !q.Attrs.Equal(k.Attrs) ||
		!u.only(q, at) || !u.only(k, at) || !u.only(v, at) {
		return m, nil, nil, false
	}
	m.at = at
	if m.q, qx, ok = ropePath(u, q); !ok {
		return m, nil, nil, false
	}
	if m.k, kx, ok = ropePath(u, k); !ok {
		return m, nil, nil, false
	}
	qn, kn := m.q.norm, m.k.norm
	if (qn == nil) != (kn == nil) || (qn != nil && !qn.Attrs.Equal(kn.Attrs)) {
		return m, nil, nil, false
	}
	return m, qx, kx, true
}

// ropePath follows rope(norm?(x)), each step read only by the one above,
// and returns the block with rope and norm set, and x.
func ropePath(u useInfo, rope *ir.Value) (b rowBlock, x *ir.Value, ok bool) {
	b.rope = rope
	x = rope.Args[0]
	if !u.only(x, rope) {
		return b, nil, false
	}
	if x.Op == ir.OpRMSNorm {
		b.norm = x
		x = x.Args[0]
		if !u.only(x, b.norm) {
			return b, nil, false
		}
	}
	return b, x, true
}

// fromRow sets the block's view and sec when view is reshape(sec) with sec
// a section read only by view.
func (b *rowBlock) fromRow(u useInfo, view *ir.Value) bool {
	if view.Op != ir.OpReshape {
		return false
	}
	sec := view.Args[0]
	if sec.Op != ir.OpSection || !u.only(sec, view) {
		return false
	}
	b.view, b.sec = view, sec
	return true
}

// oneRow reports whether q, k and v are the consecutive sections
// [0, nq), [nq, nq+nk), [nq+nk, nq+nk+nv) of one row F [T, nq+nk+nv], each
// as wide as its heads (q's heads twice as wide when gated: query and gate
// rows), and sets m.row to F.
func (m *attnInput) oneRow() bool {
	f := m.q.sec.Args[0]
	sq, sk, sv := m.q.sec.Attr(), m.k.sec.Attr(), m.v.sec.Attr()
	nq, nk, nv := sq.Int("size"), sk.Int("size"), sv.Int("size")
	if m.k.sec.Args[0] != f || m.v.sec.Args[0] != f || len(f.Shape) != 2 || f.Shape[0] != ir.T ||
		sq.Int("start") != 0 || sk.Int("start") != nq || sv.Int("start") != nq+nk ||
		int64(f.Shape[1]) != nq+nk+nv {
		return false
	}
	q, k, v := m.q.rope.Shape, m.k.rope.Shape, m.v.view.Shape
	d, dv := int64(q[2]), int64(v[2])
	dq := d
	if m.gate != nil {
		dq = 2 * d
	}
	if nq != int64(q[1])*dq || nk != int64(k[1])*d || nv != int64(v[1])*dv {
		return false
	}
	m.row = f
	return true
}

// rewrite replaces the attention (or, gated, the mul by its gate) with one
// qkv_attention over the row.
func (m attnInput) rewrite(r *rewriter) {
	q, v := m.q.rope, m.v.view
	d, dv := int64(q.Shape[2]), int64(v.Shape[2])
	rope, attn := q.Attr(), m.at.Attr()
	attrs := []ir.Attr{
		ir.Ints("heads", int64(q.Shape[1]), int64(m.k.rope.Shape[1])), ir.Int("head_dim", d),
		ir.Float("theta", rope.Float("theta")), ir.Int("rotary_dims", rope.Int("rotary_dims")),
		ir.Str("style", rope.String("style")),
		ir.Int("cache", attn.Int("cache")), ir.Float("scale", attn.Float("scale")),
	}
	if dv != d {
		attrs = append(attrs, ir.Int("v_head_dim", dv))
	}
	out := m.at
	if m.gate != nil {
		attrs = append(attrs, ir.Int("gate", 1))
		out = m.gate
	}
	args := []*ir.Value{m.row, q.Args[1]}
	if qn, kn := m.q.norm, m.k.norm; qn != nil {
		args = append(args, qn.Args[1], kn.Args[1])
		attrs = append(attrs, ir.Float("eps", qn.Attr().Float("eps")))
		if qn.Attr().Bool("unit_offset") {
			attrs = append(attrs, ir.Int("unit_offset", 1))
		}
	}
	r.replace(out, r.add(ir.OpQKVAttention, args, attrs...), m.consumed()...)
}

// consumed lists the values between the row and the replaced value.
func (m attnInput) consumed() []*ir.Value {
	var vs []*ir.Value
	for _, b := range []rowBlock{m.q, m.k, m.v} {
		for _, x := range []*ir.Value{b.rope, b.norm, b.half, b.view, b.sec} {
			if x != nil {
				vs = append(vs, x)
			}
		}
	}
	if m.gate != nil {
		vs = append(vs, m.at, m.sigmoid, m.gateHalf)
	}
	return vs
}

// matchGate returns mul(at, sigmoid(gate)) and the sigmoid when at's only
// reader is that mul and gate, read only by the sigmoid, is the second half
// of the rows whose first half is qHalf (a section of the same view).
func matchGate(u useInfo, at, qHalf *ir.Value) (mul, sig *ir.Value, ok bool) {
	if len(u.users[at.ID]) != 1 || u.output[at.ID] {
		return nil, nil, false
	}
	mul = u.users[at.ID][0]
	if mul.Op != ir.OpMul {
		return nil, nil, false
	}
	sig = mul.Args[1]
	if sig == at {
		sig = mul.Args[0]
	}
	if sig.Op != ir.OpSigmoid || !u.only(sig, mul) {
		return nil, nil, false
	}
	gate := sig.Args[0]
	d := int64(qHalf.Shape.Last())
	if len(gate.Args) != 1 || gate.Args[0] != qHalf.Args[0] || !isLastDimRange(gate, d, d) || !u.only(gate, sig) {
		return nil, nil, false
	}
	return mul, sig, true
}
