// Package kvcache allocates the blocks of the paged caches: a fixed pool of
// numbered blocks of blockSize token positions each, handed to sequences as
// they grow and returned when they finish. A sequence's block table maps its
// position p to block Blocks[p/blockSize], offset p%blockSize.
//
// What it is not: it holds no cache memory and knows no backend; a backend
// owns the pools the block numbers index, and the scheduler decides which
// sequences grow. It is not safe for concurrent use.
package kvcache

import (
	"errors"
	"fmt"
)

// ErrOutOfBlocks is returned (wrapped, with the numbers) when a sequence
// cannot grow because the pool has too few free blocks.
var ErrOutOfBlocks = errors.New("kvcache: out of blocks")

// Sequence is one sequence's share of the pool: its block table and the
// number of positions it holds.
type Sequence struct {
	Blocks []int32
	Len    int
}

// Allocator hands out the blocks of one pool.
type Allocator struct {
	blockSize int
	free      []int32 // stack of free blocks; the next block handed out is the last
	used      []bool  // used[b] reports whether block b is held by a sequence
}

// NewAllocator returns an allocator for numBlocks blocks of blockSize
// positions. Blocks are handed out in increasing order at first, and the
// most recently freed block is reused first. It panics if either number is
// not positive or numBlocks does not fit an int32.
func NewAllocator(numBlocks, blockSize int) *Allocator {
	if numBlocks <= 0 || blockSize <= 0 || int64(numBlocks) > 1<<31-1 {
		panic(fmt.Sprintf("kvcache: NewAllocator(%d, %d): sizes must be positive", numBlocks, blockSize))
	}
	a := &Allocator{blockSize: blockSize, free: make([]int32, numBlocks), used: make([]bool, numBlocks)}
	for i := range a.free {
		a.free[i] = int32(numBlocks - 1 - i)
	}
	return a
}

// BlockSize returns the number of positions in a block.
func (a *Allocator) BlockSize() int { return a.blockSize }

// NumBlocks returns the size of the pool.
func (a *Allocator) NumBlocks() int { return len(a.used) }

// FreeBlocks returns the number of blocks not held by any sequence.
func (a *Allocator) FreeBlocks() int { return len(a.free) }

// BlocksFor returns the number of blocks that hold positions 0..tokens-1.
func (a *Allocator) BlocksFor(tokens int) int {
	if tokens <= 0 {
		return 0
	}
	return (tokens-1)/a.blockSize + 1
}

// Grow makes room in seq for positions < newLen, taking blocks from the pool
// as needed, and sets seq.Len to newLen. It never shrinks a sequence: a
// newLen at or below seq.Len is a no-op. When the pool has too few free
// blocks it returns an error wrapping ErrOutOfBlocks and leaves seq and the
// pool unchanged.
func (a *Allocator) Grow(seq *Sequence, newLen int) error {
	if newLen < 0 {
		return fmt.Errorf("kvcache: grow to negative length %d", newLen)
	}
	if newLen <= seq.Len {
		return nil
	}
	need := a.BlocksFor(newLen) - len(seq.Blocks)
	if need > len(a.free) {
		return fmt.Errorf("%w: growing a sequence from %d to %d positions needs %d more blocks of %d, %d of %d free",
			ErrOutOfBlocks, seq.Len, newLen, need, a.blockSize, len(a.free), len(a.used))
	}
	for ; need > 0; need-- {
		b := a.free[len(a.free)-1]
		a.free = a.free[:len(a.free)-1]
		a.used[b] = true
		seq.Blocks = append(seq.Blocks, b)
	}
	seq.Len = newLen
	return nil
}

// Free returns seq's blocks to the pool and empties seq; freeing an empty
// sequence does nothing. It panics if seq holds a block that is out of range
// or not allocated (a block freed twice through copies of a Sequence).
func (a *Allocator) Free(seq *Sequence) {
	for i, b := range seq.Blocks {
		if b < 0 || int(b) >= len(a.used) || !a.used[b] {
			for _, r := range seq.Blocks[:i] {
				a.used[r] = true // leave the pool as it was
			}
			panic(fmt.Sprintf("kvcache: Free: block %d is not allocated", b))
		}
		a.used[b] = false
	}
	for i := len(seq.Blocks) - 1; i >= 0; i-- {
		a.free = append(a.free, seq.Blocks[i])
	}
	seq.Blocks, seq.Len = nil, 0
}
