package grammar

// MaxStacks bounds the distinct parse stacks a Matcher keeps after a byte.
const MaxStacks = 1024

// maxWork bounds the expansion steps (rule references entered,
// alternatives popped) taken for one byte.
const maxWork = 1 << 16

// A stack is a parse position: the element to match next (pos) above the
// continuations of the rules it is inside. Stacks are immutable and share
// tails; nil is the empty stack, the whole grammar matched.
type stack struct {
	pos  int32
	next *stack
	hash uint64
}

func (s *stack) hashOf() uint64 {
	if s == nil {
		return 0
	}
	return s.hash
}

func equalStacks(a, b *stack) bool {
	for a != b {
		if a == nil || b == nil || a.hash != b.hash || a.pos != b.pos {
			return false
		}
		a, b = a.next, b.next
	}
	return true
}

// arena hands out stack nodes in chunks; a mask computation resets it.
type arena struct {
	chunks [][]stack
	cur    int // chunk in use
	used   int // nodes used in chunks[cur]
}

const arenaChunk = 4096

func (a *arena) cons(pos int32, next *stack) *stack {
	var s *stack
	if a == nil {
		s = &stack{}
	} else {
		if a.cur == len(a.chunks) {
			a.chunks = append(a.chunks, make([]stack, arenaChunk))
		}
		s = &a.chunks[a.cur][a.used]
		if a.used++; a.used == arenaChunk {
			a.cur, a.used = a.cur+1, 0
		}
	}
	s.pos, s.next = pos, next
	s.hash = (next.hashOf()*0x9E3779B97F4A7C15 ^ uint64(pos)) * 0xBF58476D1CE4E5B9
	return s
}

func (a *arena) reset() { a.cur, a.used = 0, 0 }

// mark and release free the nodes handed out after mark, all at once.
func (a *arena) mark() [2]int { return [2]int{a.cur, a.used} }

func (a *arena) release(m [2]int) { a.cur, a.used = m[0], m[1] }

// bottom stands for the unknown rest of a stack below its top frames,
// where masks are precomputed from the top frames alone (see prefixMask).
var bottom = &stack{pos: -1, hash: 0x5851F42D4C957F2D}

// expander builds the set of stacks after a byte: every stack is expanded
// until its top is a byte set (or it is empty), then added once.
type expander struct {
	g      *Grammar
	a      *arena
	out    []*stack
	work   int
	fault  bool // a limit was hit: the result is rejected
	bottom bool // a stack popped down to bottom
}

func (x *expander) add(s *stack) {
	h := s.hashOf()
	for _, t := range x.out {
		if t.hashOf() == h && equalStacks(s, t) {
			return
		}
	}
	if len(x.out) == MaxStacks {
		x.fault = true
		return
	}
	x.out = append(x.out, s)
}

// push expands s: s's top has not been looked at yet.
func (x *expander) push(s *stack) {
	for {
		if x.work++; x.work > maxWork {
			x.fault = true
			return
		}
		if s == nil {
			x.add(nil)
			return
		}
		if s == bottom {
			x.bottom = true
			return
		}
		e := &x.g.elems[s.pos]
		switch e.kind {
		case eEnd:
			s = s.next
		case eBytes:
			x.add(s)
			return
		case eRule:
			cont := s.next
			if x.g.elems[s.pos+1].kind != eEnd {
				cont = x.a.cons(s.pos+1, s.next)
			}
			alts := x.g.alts[e.rule]
			for _, a := range alts[:max(len(alts)-1, 0)] {
				x.push(x.a.cons(a, cont))
				if x.fault {
					return
				}
			}
			if len(alts) == 0 {
				return
			}
			s = x.a.cons(alts[len(alts)-1], cont)
		}
	}
}

// step appends to dst the stacks that follow stacks after byte c; ok is
// false when a limit was hit.
func (g *Grammar) step(a *arena, dst, stacks []*stack, c byte) ([]*stack, bool) {
	out, ok, _ := g.stepBottom(a, dst, stacks, c)
	return out, ok
}

// stepBottom is step, and reports whether a stack popped down to bottom.
func (g *Grammar) stepBottom(a *arena, dst, stacks []*stack, c byte) (_ []*stack, ok, atBottom bool) {
	x := expander{g: g, a: a, out: dst}
	for _, s := range stacks {
		if s == nil {
			continue
		}
		e := &g.elems[s.pos]
		if !e.set.has(c) {
			continue
		}
		// rest: what follows the top element (or its whole class).
		rest := s.next
		if !e.tail && g.elems[s.pos+1].kind != eEnd {
			rest = a.cons(s.pos+1, s.next)
		}
		if e.trans != nil && e.trans[c] >= 0 {
			x.add(a.cons(e.trans[c], rest)) // inside a character
		} else {
			x.push(rest)
		}
		if x.fault {
			return dst[:0], false, false
		}
	}
	return x.out, true, x.bottom
}

// A Matcher follows a Grammar through the bytes accepted so far. The zero
// value is not usable; call NewMatcher. A Matcher is not safe for
// concurrent use, but Clone gives an independent copy in O(stacks).
type Matcher struct {
	g      *Grammar
	stacks []*stack
}

// NewMatcher returns a Matcher at the start of g.
func (g *Grammar) NewMatcher() *Matcher {
	x := expander{g: g}
	for _, a := range g.alts[g.root] {
		x.push(x.a.cons(a, nil))
	}
	return &Matcher{g: g, stacks: x.out}
}

// Accept advances the matcher over b and reports whether the grammar
// allows it; on false the matcher is unchanged.
func (m *Matcher) Accept(b []byte) bool {
	stacks := m.stacks
	for _, c := range b {
		next, ok := m.g.step(nil, nil, stacks, c)
		if !ok || len(next) == 0 {
			return false
		}
		stacks = next
	}
	m.stacks = stacks
	return true
}

// AcceptString is Accept of a string.
func (m *Matcher) AcceptString(s string) bool { return m.Accept([]byte(s)) }

// CanEnd reports whether the bytes accepted so far are a whole sentence
// of the grammar.
func (m *Matcher) CanEnd() bool {
	for _, s := range m.stacks {
		if s == nil {
			return true
		}
	}
	return false
}

// Done reports whether no byte can follow: the grammar can only end.
func (m *Matcher) Done() bool {
	for _, s := range m.stacks {
		if s != nil {
			return false
		}
	}
	return true
}

// Allowed returns the set of bytes that may come next, as a 256-bit set
// (bit c of word c/64).
func (m *Matcher) Allowed() [4]uint64 {
	var out byteSet
	for _, s := range m.stacks {
		if s != nil {
			set := &m.g.elems[s.pos].set
			for i := range out {
				out[i] |= set[i]
			}
		}
	}
	return out
}

// Clone returns an independent copy of m.
func (m *Matcher) Clone() *Matcher {
	return &Matcher{g: m.g, stacks: append([]*stack(nil), m.stacks...)}
}
