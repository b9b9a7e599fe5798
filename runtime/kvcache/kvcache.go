// Package kvcache allocates the blocks of the paged caches: a fixed pool of
// numbered blocks of blockSize token positions each, handed to sequences as
// they grow and returned when they finish. A sequence's block table maps its
// position p to block Blocks[p/blockSize], offset p%blockSize.
//
// Blocks are reference counted so that sequences can share the full blocks
// of a common prompt prefix (prefix caching): once a block's positions are
// all computed, Commit records it under a hash of its tokens chained with
// the hashes of every earlier block, and Share hands such blocks to a new
// sequence whose tokens start the same way. A cached block that no sequence
// holds stays cached until the pool needs it; then the least recently
// released one is evicted.
//
// What it is not: it holds no cache memory and knows no backend; a backend
// owns the pools the block numbers index, and the scheduler decides which
// sequences grow. It is not safe for concurrent use.
package kvcache

import (
	"errors"
	"fmt"
	"slices"
)

// ErrOutOfBlocks is returned (wrapped, with the numbers) when a sequence
// cannot grow because the pool has too few free blocks.
var ErrOutOfBlocks = errors.New("kvcache: out of blocks")

// Sequence is one sequence's share of the pool: its block table and the
// number of positions it holds.
type Sequence struct {
	Blocks []int32
	Len    int
	// Hashes holds the chained hash of each of the sequence's leading full
	// blocks that Commit (or Share) has seen; len(Hashes) <= len(Blocks).
	Hashes []uint64
}

// Allocator hands out the blocks of one pool.
type Allocator struct {
	blockSize int
	free      []int32 // stack of free uncached blocks; the next block handed out is the last
	ref       []int32 // ref[b]: sequences holding block b

	// Prefix cache. A block is cached when hash[b] != 0 (cached[b] true);
	// cached blocks with ref 0 sit in the LRU list, oldest first.
	byHash  map[uint64]int32
	hash    []uint64
	cached  []bool
	tokens  [][]int32 // tokens of each cached block, checked on lookup
	lruPrev []int32
	lruNext []int32
	lruHead int32 // oldest; -1 when empty
	lruTail int32
	lruLen  int

	stats PrefixStats
}

// PrefixStats counts prefix-cache lookups in token positions.
type PrefixStats struct {
	Queried int64 // positions looked up by Share
	Hit     int64 // positions Share found cached
	Evicted int64 // cached blocks evicted to make room
}

// NewAllocator returns an allocator for numBlocks blocks of blockSize
// positions. Blocks are handed out in increasing order at first, and the
// most recently freed block is reused first. It panics if either number is
// not positive or numBlocks does not fit an int32.
func NewAllocator(numBlocks, blockSize int) *Allocator {
	if numBlocks <= 0 || blockSize <= 0 || int64(numBlocks) > 1<<31-1 {
		panic(fmt.Sprintf("kvcache: NewAllocator(%d, %d): sizes must be positive", numBlocks, blockSize))
	}
	a := &Allocator{
		blockSize: blockSize,
		free:      make([]int32, numBlocks),
		ref:       make([]int32, numBlocks),
		byHash:    map[uint64]int32{},
		hash:      make([]uint64, numBlocks),
		cached:    make([]bool, numBlocks),
		tokens:    make([][]int32, numBlocks),
		lruPrev:   make([]int32, numBlocks),
		lruNext:   make([]int32, numBlocks),
		lruHead:   -1,
		lruTail:   -1,
	}
	for i := range a.free {
		a.free[i] = int32(numBlocks - 1 - i)
	}
	return a
}

// BlockSize returns the number of positions in a block.
func (a *Allocator) BlockSize() int { return a.blockSize }

// NumBlocks returns the size of the pool.
func (a *Allocator) NumBlocks() int { return len(a.ref) }

// FreeBlocks returns the number of blocks not held by any sequence,
// including cached blocks that may be evicted.
func (a *Allocator) FreeBlocks() int { return len(a.free) + a.lruLen }

// CachedBlocks returns the number of blocks in the prefix cache, held or not.
func (a *Allocator) CachedBlocks() int { return len(a.byHash) }

// Stats returns the prefix-cache counters.
func (a *Allocator) Stats() PrefixStats { return a.stats }

// BlocksFor returns the number of blocks that hold positions 0..tokens-1.
func (a *Allocator) BlocksFor(tokens int) int {
	if tokens <= 0 {
		return 0
	}
	return (tokens-1)/a.blockSize + 1
}

// Grow makes room in seq for positions < newLen, taking blocks from the pool
// as needed (evicting the least recently released cached blocks when no
// uncached block is free), and sets seq.Len to newLen. It never shrinks a
// sequence: a newLen at or below seq.Len is a no-op. When the pool has too
// few free blocks it returns an error wrapping ErrOutOfBlocks and leaves seq
// and the pool unchanged.
func (a *Allocator) Grow(seq *Sequence, newLen int) error {
	if newLen < 0 {
		return fmt.Errorf("kvcache: grow to negative length %d", newLen)
	}
	if newLen <= seq.Len {
		return nil
	}
	need := a.BlocksFor(newLen) - len(seq.Blocks)
	if need > a.FreeBlocks() {
		return fmt.Errorf("%w: growing a sequence from %d to %d positions needs %d more blocks of %d, %d of %d free",
			ErrOutOfBlocks, seq.Len, newLen, need, a.blockSize, a.FreeBlocks(), len(a.ref))
	}
	for ; need > 0; need-- {
		var b int32
		if len(a.free) > 0 {
			b = a.free[len(a.free)-1]
			a.free = a.free[:len(a.free)-1]
		} else {
			b = a.lruHead
			a.lruRemove(b)
			a.uncache(b)
			a.stats.Evicted++
		}
		a.ref[b] = 1
		seq.Blocks = append(seq.Blocks, b)
	}
	seq.Len = newLen
	return nil
}

// Free releases seq's blocks and empties seq; freeing an empty sequence
// does nothing. Blocks no other sequence holds return to the pool; cached
// ones stay findable by Share until evicted. It panics if seq holds a block
// that is out of range or not allocated (a block freed twice through copies
// of a Sequence).
func (a *Allocator) Free(seq *Sequence) {
	for _, b := range seq.Blocks {
		if b < 0 || int(b) >= len(a.ref) || a.ref[b] <= 0 {
			panic(fmt.Sprintf("kvcache: Free: block %d is not allocated", b))
		}
	}
	if len(seq.Blocks) > 1 {
		// A block listed twice in one table would be freed twice.
		seen := slices.Clone(seq.Blocks)
		slices.Sort(seen)
		for i := 1; i < len(seen); i++ {
			if seen[i] == seen[i-1] && a.ref[seen[i]] < 2 {
				panic(fmt.Sprintf("kvcache: Free: block %d is not allocated", seen[i]))
			}
		}
	}
	// Release the tail first, so that the prefix's first blocks are the
	// most recently used (evicted last) and the free stack reuses the
	// most recently freed block first.
	for i := len(seq.Blocks) - 1; i >= 0; i-- {
		b := seq.Blocks[i]
		a.ref[b]--
		if a.ref[b] > 0 {
			continue
		}
		if a.cached[b] {
			a.lruPush(b)
		}
	}
	for i := len(seq.Blocks) - 1; i >= 0; i-- {
		b := seq.Blocks[i]
		if a.ref[b] == 0 && !a.cached[b] {
			a.free = append(a.free, b)
		}
	}
	seq.Blocks, seq.Len, seq.Hashes = nil, 0, nil
}

// hashBlock chains parent with one block's tokens (FNV-1a, 64-bit). Zero
// is reserved for "not cached".
func hashBlock(parent uint64, toks []int32) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037) ^ parent
	h *= prime
	for _, t := range toks {
		v := uint32(t)
		for i := 0; i < 4; i++ {
			h ^= uint64(byte(v >> (8 * i)))
			h *= prime
		}
	}
	if h == 0 {
		h = 1
	}
	return h
}

// Share gives an empty seq the cached blocks that hold the longest prefix
// of tokens made of full blocks, at most maxLen positions, taking a
// reference on each; it returns the number of positions shared (a multiple
// of the block size), which is also seq.Len. A caller that needs the
// logits of the last token passes maxLen = len(tokens)-1.
func (a *Allocator) Share(seq *Sequence, tokens []int32, maxLen int) int {
	if len(seq.Blocks) != 0 {
		return 0
	}
	a.stats.Queried += int64(min(len(tokens), max(maxLen, 0)))
	var parent uint64
	for n := 0; (n+1)*a.blockSize <= min(len(tokens), maxLen); n++ {
		toks := tokens[n*a.blockSize : (n+1)*a.blockSize]
		h := hashBlock(parent, toks)
		b, ok := a.byHash[h]
		if !ok || !slices.Equal(a.tokens[b], toks) {
			break
		}
		if a.ref[b] == 0 {
			a.lruRemove(b)
		}
		a.ref[b]++
		seq.Blocks = append(seq.Blocks, b)
		seq.Hashes = append(seq.Hashes, h)
		parent = h
	}
	seq.Len = len(seq.Blocks) * a.blockSize
	a.stats.Hit += int64(seq.Len)
	return seq.Len
}

// Commit records in the prefix cache every full block of seq whose
// positions are computed; tokens are the sequence's tokens, of which the
// first seq.Len are in the cache. A block whose hash another block already
// has stays private to seq.
func (a *Allocator) Commit(seq *Sequence, tokens []int32) {
	full := min(seq.Len, len(tokens)) / a.blockSize
	full = min(full, len(seq.Blocks))
	for n := len(seq.Hashes); n < full; n++ {
		var parent uint64
		if n > 0 {
			parent = seq.Hashes[n-1]
		}
		toks := tokens[n*a.blockSize : (n+1)*a.blockSize]
		h := hashBlock(parent, toks)
		seq.Hashes = append(seq.Hashes, h)
		b := seq.Blocks[n]
		if a.cached[b] {
			continue
		}
		if _, dup := a.byHash[h]; dup {
			continue
		}
		a.byHash[h] = b
		a.hash[b] = h
		a.cached[b] = true
		a.tokens[b] = slices.Clone(toks)
	}
}

func (a *Allocator) uncache(b int32) {
	delete(a.byHash, a.hash[b])
	a.hash[b], a.cached[b], a.tokens[b] = 0, false, nil
}

func (a *Allocator) lruPush(b int32) {
	a.lruPrev[b], a.lruNext[b] = a.lruTail, -1
	if a.lruTail >= 0 {
		a.lruNext[a.lruTail] = b
	} else {
		a.lruHead = b
	}
	a.lruTail = b
	a.lruLen++
}

func (a *Allocator) lruRemove(b int32) {
	p, n := a.lruPrev[b], a.lruNext[b]
	if p >= 0 {
		a.lruNext[p] = n
	} else {
		a.lruHead = n
	}
	if n >= 0 {
		a.lruPrev[n] = p
	} else {
		a.lruTail = p
	}
	a.lruLen--
}
