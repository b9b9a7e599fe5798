package main

import (
	"testing"

	"github.com/inference-pio/pio/ir"
)

// A decode step reads the paged caches in their stored dtype: a bf16 KV
// cache is half the bytes of an f32 one; state caches are not counted.
func TestBytesPerTokenKVDType(t *testing.T) {
	plan := func(dt ir.DType) *ir.Plan {
		return &ir.Plan{Caches: []ir.CacheSpec{
			{Kind: ir.CacheKV, DType: dt, Entries: []ir.Shape{ir.Sh(2, 8), ir.Sh(2, 6)}},
			{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(4, 4)}},
		}}
	}
	const ctx = 10
	if got, want := bytesPerToken(plan(ir.F32), ctx), int64((16+12)*4*ctx); got != want {
		t.Errorf("f32 cache: %d bytes, want %d", got, want)
	}
	if got, want := bytesPerToken(plan(ir.BF16), ctx), int64((16+12)*2*ctx); got != want {
		t.Errorf("bf16 cache: %d bytes, want %d", got, want)
	}
}
