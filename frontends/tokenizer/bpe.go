package tokenizer

import (
	"strings"
	"sync"
)

// cache holds the BPE of pieces already seen (HF keeps one too). It is cleared when full rather
// than evicted piecewise: the hit rate stays high on natural text and memory stays bounded.
type cache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const (
	cacheEntries  = 1 << 16
	cacheMaxPiece = 256 // longer pieces are rare and not worth keeping
)

func newCache() *cache { return &cache{m: make(map[string][]int32)} }

func (c *cache) get(s string) ([]int32, bool) {
	c.mu.RLock()
	v, ok := c.m[s]
	c.mu.RUnlock()
	return v, ok
}

func (c *cache) put(s string, ids []int32) {
	c.mu.Lock()
	if len(c.m) >= cacheEntries {
		clear(c.m)
	}
	c.m[s] = ids
	c.mu.Unlock()
}

// bpe appends the ids of one pre-tokenized piece (raw bytes; the ByteLevel mapping is implicit:
// byteID maps each byte to its token).
func (t *Tokenizer) bpe(dst []int32, piece string) []int32 {
	if len(piece) <= cacheMaxPiece {
		if ids, ok := t.cache.get(piece); ok {
			return append(dst, ids...)
		}
	}
	ids := t.bpeUncached(piece)
	if len(piece) <= cacheMaxPiece {
		// A clone: piece points into the caller's text, which the cache must not keep alive.
		t.cache.put(strings.Clone(piece), ids)
	}
	return append(dst, ids...)
}

func (t *Tokenizer) bpeUncached(piece string) []int32 {
	if t.ignoreMerges {
		if id, ok := t.vocab[byteLevel(piece)]; ok {
			return []int32{id}
		}
	}
	// Symbols as a doubly linked list over the bytes; bytes without a token are dropped (HF's
	// BPE without unk_token does the same).
	n := 0
	sym := make([]symbol, 0, len(piece))
	for i := 0; i < len(piece); i++ {
		id := t.byteID[piece[i]]
		if id < 0 {
			continue
		}
		sym = append(sym, symbol{id: id, prev: n - 1, next: n + 1})
		n++
	}
	if n == 0 {
		return nil
	}
	sym[n-1].next = -1
	if n == 1 {
		return []int32{sym[0].id}
	}
	// HF's Word::merge_all: a heap of candidate merges ordered by (rank, position); stale entries
	// are skipped when popped.
	q := make(mergeQueue, 0, n)
	for i := 0; i+1 < n; i++ {
		if m, ok := t.merges[pairKey(sym[i].id, sym[i+1].id)]; ok {
			q = append(q, candidate{pos: i, rank: m.rank, id: m.id})
		}
	}
	q.init()
	for len(q) > 0 {
		top := q.pop()
		cur := &sym[top.pos]
		if cur.dead || cur.next < 0 {
			continue
		}
		right := sym[cur.next]
		if m, ok := t.merges[pairKey(cur.id, right.id)]; !ok || m.id != top.id {
			continue
		}
		cur.id = top.id
		sym[cur.next].dead = true
		cur.next = right.next
		if right.next >= 0 {
			sym[right.next].prev = top.pos
		}
		if cur.prev >= 0 {
			if m, ok := t.merges[pairKey(sym[cur.prev].id, cur.id)]; ok {
				q.push(candidate{pos: cur.prev, rank: m.rank, id: m.id})
			}
		}
		if cur.next >= 0 {
			if m, ok := t.merges[pairKey(cur.id, sym[cur.next].id)]; ok {
				q.push(candidate{pos: top.pos, rank: m.rank, id: m.id})
			}
		}
	}
	out := make([]int32, 0, n)
	for i := 0; i >= 0; i = sym[i].next {
		out = append(out, sym[i].id)
	}
	return out
}

type symbol struct {
	id         int32
	prev, next int
	dead       bool
}

type candidate struct {
	pos      int
	rank, id int32
}

// mergeQueue is a binary min-heap of candidates by (rank, pos), written out rather than through
// container/heap to keep candidates off the garbage-collected heap.
type mergeQueue []candidate

func (c candidate) less(d candidate) bool {
	return c.rank < d.rank || c.rank == d.rank && c.pos < d.pos
}

func (q mergeQueue) init() {
	for i := len(q)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

func (q *mergeQueue) push(c candidate) {
	*q = append(*q, c)
	h := *q
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h[i].less(h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (q *mergeQueue) pop() candidate {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	*q = h[:last]
	q.down(0)
	return top
}

func (q mergeQueue) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(q) {
			return
		}
		m := l
		if r := l + 1; r < len(q) && q[r].less(q[l]) {
			m = r
		}
		if !q[m].less(q[i]) {
			return
		}
		q[i], q[m] = q[m], q[i]
		i = m
	}
}
