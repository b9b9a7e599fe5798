package grammar

import (
	"slices"
	"sync"
)

// A Vocab is a tokenizer's vocabulary as byte strings, arranged in a trie
// so that tokens sharing a prefix share the work of matching it. It is
// immutable and safe for concurrent use.
type Vocab struct {
	size  int
	eos   []int32
	nodes []trieNode // nodes[0] is the root
	edges []trieEdge
	ids   []int32 // tokens ending at a node: ids[node.idStart:node.idEnd]
	depth int     // the longest token
	pool  sync.Pool
}

type trieNode struct {
	edgeStart, edgeEnd int32
	idStart, idEnd     int32
}

type trieEdge struct {
	b     byte
	child int32
}

// NewVocab arranges tokens (indexed by token id; a nil or empty entry is a
// token that is not text, such as a special token) for Mask. eos are the
// tokens allowed, and only where, the grammar may end.
func NewVocab(tokens [][]byte, eos []int32) *Vocab {
	v := &Vocab{size: len(tokens), eos: slices.Clone(eos)}
	order := make([]int32, 0, len(tokens))
	for id, t := range tokens {
		if len(t) > 0 {
			order = append(order, int32(id))
			v.depth = max(v.depth, len(t))
		}
	}
	slices.SortFunc(order, func(a, b int32) int { return slices.Compare(tokens[a], tokens[b]) })
	// Build from the sorted tokens: the path of the previous token is the
	// stack of open nodes; each token pops to the shared prefix.
	type open struct {
		node int32
		tmp  []trieEdge
		ids  []int32
	}
	type built struct {
		edges []trieEdge
		ids   []int32
	}
	var all []built
	newNode := func() int32 { all = append(all, built{}); return int32(len(all) - 1) }
	path := []open{{node: newNode()}}
	var prev []byte
	closeTo := func(n int) {
		for len(path) > n {
			o := path[len(path)-1]
			all[o.node] = built{edges: o.tmp, ids: o.ids}
			path = path[:len(path)-1]
		}
	}
	for _, id := range order {
		t := tokens[id]
		common := 0
		for common < len(prev) && common < len(t) && prev[common] == t[common] {
			common++
		}
		closeTo(common + 1)
		for i := common; i < len(t); i++ {
			child := newNode()
			parent := &path[len(path)-1]
			parent.tmp = append(parent.tmp, trieEdge{b: t[i], child: child})
			path = append(path, open{node: child})
		}
		path[len(path)-1].ids = append(path[len(path)-1].ids, id)
		prev = t
	}
	closeTo(0)
	v.nodes = make([]trieNode, len(all))
	for i, n := range all {
		v.nodes[i] = trieNode{
			edgeStart: int32(len(v.edges)), edgeEnd: int32(len(v.edges) + len(n.edges)),
			idStart: int32(len(v.ids)), idEnd: int32(len(v.ids) + len(n.ids)),
		}
		v.edges = append(v.edges, n.edges...)
		v.ids = append(v.ids, n.ids...)
	}
	return v
}

// Size is the number of token ids, the bits of a mask.
func (v *Vocab) Size() int { return v.size }

// MaskWords is the length of a mask in words.
func (v *Vocab) MaskWords() int { return (v.size + 63) / 64 }

type maskScratch struct {
	a    arena
	bufs [][]*stack
	rest []*stack
}

func (v *Vocab) scratch() *maskScratch {
	s, _ := v.pool.Get().(*maskScratch)
	if s == nil {
		s = &maskScratch{bufs: make([][]*stack, v.depth+1)}
	}
	s.a.reset()
	return s
}

// Limits of the caches a Grammar keeps per Vocab (see maskCache).
const (
	prefixFrames    = 3    // the top frames of a stack that key a prefix mask
	maxPrefixMasks  = 1024 // prefix masks kept; the cache starts over when full
	maxStateMasks   = 64   // whole masks kept, the oldest replaced first
	maxPrefixStacks = 64   // above this many stacks a mask is computed directly
)

// A maskCache holds what Mask has computed for one Grammar over one Vocab.
type maskCache struct {
	mu       sync.Mutex
	prefixes map[uint64][]*prefixMask
	nprefix  int
	states   map[uint64]*stateMask
	ring     []*stateMask
	next     int
}

// A prefixMask is what a stack's top frames decide alone: the tokens
// accepted without popping below them, and the trie nodes where some path
// pops below them (the rest of such a token depends on the stack below).
type prefixMask struct {
	frames   []int32
	accept   []uint64
	frontier []int32
}

// A stateMask is the mask of a whole matcher state (its set of stacks).
type stateMask struct {
	hash   uint64
	stacks []*stack
	mask   []uint64
}

func (g *Grammar) maskCache(v *Vocab) *maskCache {
	if c, ok := g.masks.Load(v); ok {
		return c.(*maskCache)
	}
	c, _ := g.masks.LoadOrStore(v, &maskCache{prefixes: map[uint64][]*prefixMask{}, states: map[uint64]*stateMask{}})
	return c.(*maskCache)
}

func mix(h uint64) uint64 {
	h ^= h >> 31
	h *= 0x7FB5D329728EA185
	return h ^ h>>27
}

// stateHash is a hash of a set of stacks, independent of their order.
func stateHash(stacks []*stack) uint64 {
	var h uint64
	for _, s := range stacks {
		h += mix(s.hashOf() + 1)
	}
	return h
}

// sameStacks reports whether a and b (each without duplicates) are the
// same set of stacks.
func sameStacks(a, b []*stack) bool {
	if len(a) != len(b) {
		return false
	}
next:
	for _, s := range a {
		for _, t := range b {
			if s.hashOf() == t.hashOf() && equalStacks(s, t) {
				continue next
			}
		}
		return false
	}
	return true
}

func (c *maskCache) state(h uint64, stacks []*stack) []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.states[h]; e != nil && sameStacks(e.stacks, stacks) {
		return e.mask
	}
	return nil
}

func (c *maskCache) putState(h uint64, stacks []*stack, mask []uint64) {
	e := &stateMask{hash: h, stacks: slices.Clone(stacks), mask: slices.Clone(mask)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ring) < maxStateMasks {
		c.ring = append(c.ring, e)
	} else {
		if old := c.ring[c.next]; c.states[old.hash] == old {
			delete(c.states, old.hash)
		}
		c.ring[c.next] = e
		c.next = (c.next + 1) % maxStateMasks
	}
	c.states[h] = e
}

func (c *maskCache) prefix(h uint64, frames []int32) *prefixMask {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.prefixes[h] {
		if slices.Equal(e.frames, frames) {
			return e
		}
	}
	return nil
}

func (c *maskCache) putPrefix(h uint64, e *prefixMask) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nprefix >= maxPrefixMasks {
		clear(c.prefixes)
		c.nprefix = 0
	}
	c.prefixes[h] = append(c.prefixes[h], e)
	c.nprefix++
}

// Mask writes into mask (MaskWords long) the tokens that may follow m's
// state: bit id%64 of word id/64 is set for a token whose bytes the
// grammar accepts, and for the EOS tokens where it can end.
//
// A token is accepted when it is accepted from one of m's stacks, so the
// mask is the union of one mask per stack, and that is split again (see
// the package documentation): the top frames of a stack decide most
// tokens alone, and their answer is computed once per Grammar and Vocab
// and kept; only the tokens whose bytes reach below those frames are
// walked against the rest of the stack. Whole masks are kept too, keyed by
// the set of stacks, which inside a JSON string repeats at every token.
func (v *Vocab) Mask(m *Matcher, mask []uint64) {
	c := m.g.maskCache(v)
	h := stateHash(m.stacks)
	if cached := c.state(h, m.stacks); cached != nil {
		copy(mask, cached)
		return
	}
	s := v.scratch()
	defer v.pool.Put(s)
	if len(m.stacks) > maxPrefixStacks {
		v.maskDirect(m, s, mask)
		c.putState(h, m.stacks, mask)
		return
	}
	clear(mask)
	if m.CanEnd() {
		for _, id := range v.eos {
			mask[id>>6] |= 1 << (id & 63)
		}
	}
	g := m.g
	var frames [prefixFrames]int32
	for _, st := range m.stacks {
		n, below := 0, st
		fh := uint64(0)
		for ; n < prefixFrames && below != nil; n++ {
			frames[n] = below.pos
			fh = mix(fh ^ uint64(below.pos))
			below = below.next
		}
		if n == 0 {
			continue // the end of the grammar: EOS, done above
		}
		p := c.prefix(fh, frames[:n])
		if p == nil {
			p = v.computePrefix(g, s, frames[:n])
			c.putPrefix(fh, p)
		}
		for i, w := range p.accept {
			mask[i] |= w
		}
		if len(p.frontier) == 0 {
			continue
		}
		// The stacks below the frames, once a token has popped them.
		s.a.reset()
		x := expander{g: g, a: &s.a, out: s.rest[:0]}
		x.push(below)
		s.rest = x.out
		if x.fault || len(x.out) == 0 {
			continue
		}
		for _, node := range p.frontier {
			nd := v.nodes[node]
			for _, id := range v.ids[nd.idStart:nd.idEnd] {
				mask[id>>6] |= 1 << (id & 63)
			}
			if nd.edgeEnd > nd.edgeStart {
				v.walk(g, s, mask, node, s.rest, 0, nil)
			}
		}
	}
	c.putState(h, m.stacks, mask)
}

// computePrefix walks the whole trie from the stack of frames over bottom.
func (v *Vocab) computePrefix(g *Grammar, s *maskScratch, frames []int32) *prefixMask {
	p := &prefixMask{frames: slices.Clone(frames), accept: make([]uint64, v.MaskWords())}
	s.a.reset()
	st := bottom
	for i := len(frames) - 1; i >= 0; i-- {
		st = s.a.cons(frames[i], st)
	}
	v.walk(g, s, p.accept, 0, []*stack{st}, 0, &p.frontier)
	return p
}

// maskDirect is Mask without the caches: one walk of the trie from the
// root, matching each edge's byte against the stacks of its parent and
// leaving a subtree as soon as its prefix is rejected.
func (v *Vocab) maskDirect(m *Matcher, s *maskScratch, mask []uint64) {
	clear(mask)
	if m.CanEnd() {
		for _, id := range v.eos {
			mask[id>>6] |= 1 << (id & 63)
		}
	}
	s.a.reset()
	v.walk(m.g, s, mask, 0, m.stacks, 0, nil)
}

// walk marks in mask the tokens below node accepted from stacks, and
// appends to frontier (when not nil) the nodes where a stack popped down
// to bottom.
func (v *Vocab) walk(g *Grammar, s *maskScratch, mask []uint64, node int32, stacks []*stack, depth int, frontier *[]int32) {
	var allowed byteSet
	for _, st := range stacks {
		if st != nil {
			set := &g.elems[st.pos].set
			for i := range allowed {
				allowed[i] |= set[i]
			}
		}
	}
	n := v.nodes[node]
	for _, e := range v.edges[n.edgeStart:n.edgeEnd] {
		if !allowed.has(e.b) {
			continue
		}
		mark := s.a.mark()
		next, ok, atBottom := g.stepBottom(&s.a, s.bufs[depth][:0], stacks, e.b)
		s.bufs[depth] = next
		if ok && atBottom && frontier != nil {
			*frontier = append(*frontier, e.child)
		}
		if ok && len(next) > 0 {
			c := v.nodes[e.child]
			for _, id := range v.ids[c.idStart:c.idEnd] {
				mask[id>>6] |= 1 << (id & 63)
			}
			if c.edgeEnd > c.edgeStart {
				v.walk(g, s, mask, e.child, next, depth+1, frontier)
			}
		}
		s.a.release(mark)
	}
}
