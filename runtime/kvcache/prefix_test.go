package kvcache

import (
	"slices"
	"testing"
)

func seqTokens(n int, base int32) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = base + int32(i)
	}
	return t
}

func TestPrefixShareAndEvict(t *testing.T) {
	a := NewAllocator(6, 4)
	toks := seqTokens(10, 100) // 2 full blocks + 2 positions
	var s1 Sequence
	if got := a.Share(&s1, toks, len(toks)-1); got != 0 {
		t.Fatalf("Share on an empty cache = %d, want 0", got)
	}
	if err := a.Grow(&s1, 10); err != nil {
		t.Fatal(err)
	}
	a.Commit(&s1, toks)
	if a.CachedBlocks() != 2 {
		t.Fatalf("CachedBlocks = %d, want 2 (the partial block is not cached)", a.CachedBlocks())
	}

	// A second sequence with the same first 9 tokens shares both full blocks
	// while s1 still holds them.
	other := append(slices.Clone(toks[:9]), 7, 8, 9)
	var s2 Sequence
	if got := a.Share(&s2, other, len(other)-1); got != 8 {
		t.Fatalf("Share = %d, want 8", got)
	}
	if !slices.Equal(s2.Blocks, s1.Blocks[:2]) {
		t.Fatalf("shared blocks %v, want %v", s2.Blocks, s1.Blocks[:2])
	}
	// maxLen caps the shared prefix at whole blocks.
	var s3 Sequence
	if got := a.Share(&s3, toks[:8], 7); got != 4 {
		t.Errorf("Share with maxLen 7 = %d, want 4", got)
	}
	a.Free(&s3)
	// A different first block shares nothing.
	var s4 Sequence
	if got := a.Share(&s4, seqTokens(10, 0), 9); got != 0 {
		t.Errorf("Share of other tokens = %d, want 0", got)
	}

	a.Free(&s1)
	if a.FreeBlocks() != 4 { // 6 - s2's two shared blocks
		t.Fatalf("FreeBlocks = %d, want 4", a.FreeBlocks())
	}
	a.Free(&s2)
	if a.FreeBlocks() != 6 || a.CachedBlocks() != 2 {
		t.Fatalf("after freeing all: free %d cached %d, want 6, 2", a.FreeBlocks(), a.CachedBlocks())
	}
	// Unheld cached blocks are reused only when the free stack is empty,
	// the least recently released first.
	var big Sequence
	if err := a.Grow(&big, 4*4); err != nil {
		t.Fatal(err)
	}
	if a.CachedBlocks() != 2 || a.Stats().Evicted != 0 {
		t.Fatalf("growing into free blocks evicted: cached %d", a.CachedBlocks())
	}
	if err := a.Grow(&big, 5*4); err != nil {
		t.Fatal(err)
	}
	if a.CachedBlocks() != 1 || a.Stats().Evicted != 1 {
		t.Fatalf("cached %d evicted %d, want 1, 1", a.CachedBlocks(), a.Stats().Evicted)
	}
	// The block evicted is the second one (released before the first), so
	// the first block still matches.
	var s5 Sequence
	if got := a.Share(&s5, toks, 9); got != 4 {
		t.Errorf("Share after eviction = %d, want 4", got)
	}
	st := a.Stats()
	if st.Hit != 8+4+4 || st.Queried != 9+11+7+9+9 {
		t.Errorf("stats %+v", st)
	}
	a.Free(&s5)
	a.Free(&big)
	if a.FreeBlocks() != 6 {
		t.Errorf("FreeBlocks = %d, want 6", a.FreeBlocks())
	}
}

// TestRefcountsRandom drives random Share/Grow/Commit/Free and checks that
// no block is ever held by two sequences unless both share it from the
// cache, and that freeing everything returns the whole pool.
func TestRefcountsRandom(t *testing.T) {
	a := NewAllocator(16, 2)
	var seqs []*Sequence
	var toks [][]int32
	r := uint32(1)
	next := func(n uint32) int { r = r*1664525 + 1013904223; return int(r>>16) % int(n) }
	for step := 0; step < 2000; step++ {
		switch next(3) {
		case 0:
			tk := seqTokens(1+next(9), int32(next(2)*50))
			s := &Sequence{}
			a.Share(s, tk, len(tk)-1)
			if err := a.Grow(s, len(tk)); err != nil {
				a.Free(s)
				continue
			}
			a.Commit(s, tk)
			seqs, toks = append(seqs, s), append(toks, tk)
		case 1:
			if len(seqs) > 0 {
				i := next(uint32(len(seqs)))
				a.Free(seqs[i])
				seqs, toks = slices.Delete(seqs, i, i+1), slices.Delete(toks, i, i+1)
			}
		case 2:
			if len(seqs) > 0 {
				i := next(uint32(len(seqs)))
				toks[i] = append(toks[i], int32(next(4)))
				if err := a.Grow(seqs[i], len(toks[i])); err != nil {
					toks[i] = toks[i][:len(toks[i])-1]
					continue
				}
				a.Commit(seqs[i], toks[i])
			}
		}
		held := map[int32]int{}
		for _, s := range seqs {
			for _, b := range s.Blocks {
				held[b]++
			}
		}
		for b, n := range held {
			if int(a.ref[b]) != n {
				t.Fatalf("step %d: block %d ref %d, held by %d", step, b, a.ref[b], n)
			}
			if n > 1 && !a.cached[b] {
				t.Fatalf("step %d: uncached block %d held by %d sequences", step, b, n)
			}
		}
		if len(held)+a.FreeBlocks() != a.NumBlocks() {
			t.Fatalf("step %d: %d held + %d free != %d", step, len(held), a.FreeBlocks(), a.NumBlocks())
		}
	}
	for _, s := range seqs {
		a.Free(s)
	}
	if a.FreeBlocks() != a.NumBlocks() {
		t.Errorf("FreeBlocks = %d after freeing all", a.FreeBlocks())
	}
}
