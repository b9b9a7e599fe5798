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
}

// Mask writes into mask (MaskWords long) the tokens that may follow m's
// state: bit id%64 of word id/64 is set for a token whose bytes the
// grammar accepts, and for the EOS tokens where it can end. It walks the
// trie from the root, matching each edge's byte against the stacks of its
// parent, and leaves a subtree as soon as its prefix is rejected.
func (v *Vocab) Mask(m *Matcher, mask []uint64) {
	clear(mask)
	if m.CanEnd() {
		for _, id := range v.eos {
			mask[id>>6] |= 1 << (id & 63)
		}
	}
	s, _ := v.pool.Get().(*maskScratch)
	if s == nil {
		s = &maskScratch{bufs: make([][]*stack, v.depth+1)}
	}
	s.a.reset()
	v.walk(m.g, s, mask, 0, m.stacks, 0)
	v.pool.Put(s)
}

func (v *Vocab) walk(g *Grammar, s *maskScratch, mask []uint64, node int32, stacks []*stack, depth int) {
	n := v.nodes[node]
	for _, e := range v.edges[n.edgeStart:n.edgeEnd] {
		next, ok := g.step(&s.a, s.bufs[depth][:0], stacks, e.b)
		s.bufs[depth] = next
		if !ok || len(next) == 0 {
			continue
		}
		c := v.nodes[e.child]
		for _, id := range v.ids[c.idStart:c.idEnd] {
			mask[id>>6] |= 1 << (id & 63)
		}
		if c.edgeEnd > c.edgeStart {
			v.walk(g, s, mask, e.child, next, depth+1)
		}
	}
}
