package kvcache

import (
	"errors"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBlocksFor(t *testing.T) {
	a := NewAllocator(8, 4)
	for _, tc := range []struct{ tokens, want int }{
		{-1, 0}, {0, 0}, {1, 1}, {3, 1}, {4, 1}, {5, 2}, {8, 2}, {9, 3}, {32, 8}, {33, 9},
	} {
		if got := a.BlocksFor(tc.tokens); got != tc.want {
			t.Errorf("BlocksFor(%d) = %d, want %d", tc.tokens, got, tc.want)
		}
	}
}

func TestGrow(t *testing.T) {
	a := NewAllocator(8, 4)
	var s Sequence
	steps := []struct {
		newLen     int
		wantBlocks []int32
		wantLen    int
		wantFree   int
	}{
		{0, nil, 0, 8},
		{1, []int32{0}, 1, 7},
		{4, []int32{0}, 4, 7},
		{5, []int32{0, 1}, 5, 6},
		{3, []int32{0, 1}, 5, 6}, // never shrinks
		{13, []int32{0, 1, 2, 3}, 13, 4},
	}
	for _, st := range steps {
		if err := a.Grow(&s, st.newLen); err != nil {
			t.Fatalf("Grow(%d): %v", st.newLen, err)
		}
		if diff := cmp.Diff(s.Blocks, st.wantBlocks); diff != "" || s.Len != st.wantLen || a.FreeBlocks() != st.wantFree {
			t.Fatalf("after Grow(%d): len %d free %d (want %d, %d), blocks (-got +want):\n%s",
				st.newLen, s.Len, a.FreeBlocks(), st.wantLen, st.wantFree, diff)
		}
	}
	if err := a.Grow(&s, -1); err == nil {
		t.Errorf("Grow(-1) succeeded")
	}
}

func TestExhaustion(t *testing.T) {
	a := NewAllocator(4, 2)
	var s1, s2 Sequence
	if err := a.Grow(&s1, 5); err != nil { // 3 blocks
		t.Fatal(err)
	}
	if err := a.Grow(&s2, 2); err != nil { // the last block
		t.Fatal(err)
	}
	before := Sequence{Blocks: slices.Clone(s2.Blocks), Len: s2.Len}
	err := a.Grow(&s2, 3)
	if !errors.Is(err, ErrOutOfBlocks) {
		t.Fatalf("Grow past the pool: err = %v, want ErrOutOfBlocks", err)
	}
	t.Logf("error: %v", err)
	if diff := cmp.Diff(s2, before); diff != "" {
		t.Errorf("failed Grow changed the sequence (-got +want):\n%s", diff)
	}
	if a.FreeBlocks() != 0 {
		t.Errorf("FreeBlocks = %d, want 0", a.FreeBlocks())
	}
	// Filling the last block of s1 needs nothing new.
	if err := a.Grow(&s1, 6); err != nil {
		t.Errorf("Grow within the last block: %v", err)
	}
	if err := a.Grow(&s1, 7); !errors.Is(err, ErrOutOfBlocks) {
		t.Errorf("Grow(7): err = %v, want ErrOutOfBlocks", err)
	}
}

func TestReuseAfterFree(t *testing.T) {
	a := NewAllocator(4, 4)
	var s1, s2, s3 Sequence
	if err := a.Grow(&s1, 8); err != nil {
		t.Fatal(err)
	}
	if err := a.Grow(&s2, 8); err != nil {
		t.Fatal(err)
	}
	freed := slices.Clone(s1.Blocks)
	a.Free(&s1)
	if s1.Blocks != nil || s1.Len != 0 {
		t.Errorf("Free left %+v", s1)
	}
	if a.FreeBlocks() != 2 {
		t.Errorf("FreeBlocks = %d, want 2", a.FreeBlocks())
	}
	a.Free(&s1) // freeing an empty sequence is a no-op
	if err := a.Grow(&s3, 8); err != nil {
		t.Fatalf("Grow after Free: %v", err)
	}
	if diff := cmp.Diff(s3.Blocks, freed); diff != "" {
		t.Errorf("reused blocks (-got +want):\n%s", diff)
	}
	for _, b := range s3.Blocks {
		if slices.Contains(s2.Blocks, b) {
			t.Errorf("block %d handed to two sequences", b)
		}
	}
	a.Free(&s2)
	a.Free(&s3)
	if a.FreeBlocks() != 4 {
		t.Errorf("FreeBlocks = %d, want 4", a.FreeBlocks())
	}
}

func TestDoubleFreePanics(t *testing.T) {
	a := NewAllocator(4, 4)
	var s Sequence
	if err := a.Grow(&s, 6); err != nil {
		t.Fatal(err)
	}
	stale := Sequence{Blocks: slices.Clone(s.Blocks), Len: s.Len}
	a.Free(&s)
	defer func() {
		if recover() == nil {
			t.Errorf("freeing a stale copy did not panic")
		}
		if a.FreeBlocks() != 4 {
			t.Errorf("FreeBlocks = %d after the panic, want 4", a.FreeBlocks())
		}
	}()
	a.Free(&stale)
}
