package cuda

import (
	"fmt"
	"math"
	goruntime "runtime"
	"slices"
	"unsafe"

	"github.com/inference-pio/pio/runtime"
)

var _ runtime.Candidater = (*Backend)(nil)

// candRT is the state of the sampling-candidates kernel (codegen/cuda's
// sample.go): device buffers for rows×limit candidates, grown to the
// largest call seen, and their page-locked host copies.
type candRT struct {
	fn         uintptr // the kernel, 0 if none
	rows, cap  int     // what the buffers hold
	dOff       uint64  // f32[rows]: each row's offset
	dMeta      uint64  // i32[rows] counts, then f32[rows] maxima
	dRecs      uint64  // [rows][cap] (id, f32 bits) pairs
	hOff       []float32
	hMeta      []uint32
	hRecs      []uint32
	pinned     []unsafe.Pointer
	out        []runtime.Candidates
	ids        []int32
	vals       []float32
	dAllocated []uint64
}

// Candidates lists, for each logits row of the last Step, the tokens whose
// logit v has v - m >= -offsets[r] (m the row's maximum), computed on the
// device (runtime.Candidater). Two downloads: each row's count and maximum
// (8 bytes a row), then one copy of the candidate records from the first
// row with a list to the end of the last one's. One copy rather than one
// per row: a copy costs a driver call and a bus round trip (microseconds)
// whatever its size, while the records of all rows at the default limit
// (4096 candidates of 8 bytes) are 2 MiB at batch 64, some 50 µs over
// PCIe; logits are 39 MB at that batch with Qwen3's vocabulary.
func (b *Backend) Candidates(offsets []float32, limit int) ([]runtime.Candidates, int, error) {
	if b.closed {
		return nil, 0, errClosed
	}
	i, ok := b.outputs["logits"]
	if !ok || b.cand.fn == 0 || !b.ran {
		return nil, 0, fmt.Errorf("cuda: candidates: no logits from a successful Step, or no candidates kernel")
	}
	vocab := int(b.plan.Buffers[i].Shape[1])
	if len(offsets) != b.s {
		return nil, 0, fmt.Errorf("cuda: candidates: %d offsets for %d logits rows", len(offsets), b.s)
	}
	for r, o := range offsets {
		if !(o >= 0) {
			return nil, 0, fmt.Errorf("cuda: candidates: row %d: offset %v, want >= 0", r, o)
		}
	}
	if limit < 1 {
		return nil, 0, fmt.Errorf("cuda: candidates: limit %d, want >= 1", limit)
	}
	rows, lim := b.s, min(limit, vocab)
	if rows == 0 {
		return nil, vocab, nil
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	d, c := b.d, &b.cand
	if err := d.check(d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		return nil, 0, err
	}
	if rows > c.rows || lim > c.cap {
		if err := b.growCandidates(max(rows, c.rows), max(lim, c.cap)); err != nil {
			return nil, 0, err
		}
	}
	copy(c.hOff, offsets)
	if err := d.check(d.cuMemcpyHtoDAsync(c.dOff, unsafe.Pointer(&c.hOff[0]), uint64(4*rows), b.stream), "upload candidate offsets"); err != nil {
		return nil, 0, err
	}
	x, off, recs, cnt, mx := b.a.buffers[i], c.dOff, c.dRecs, c.dMeta, c.dMeta+uint64(4*rows)
	nrows, ncap := int32(rows), int32(c.cap)
	if err := b.runHelper(c.fn, rows, "candidates", unsafe.Pointer(&x), unsafe.Pointer(&off), unsafe.Pointer(&recs), unsafe.Pointer(&cnt),
		unsafe.Pointer(&mx), unsafe.Pointer(&nrows), unsafe.Pointer(&ncap)); err != nil {
		return nil, 0, err
	}
	if err := d.check(d.cuMemcpyDtoH(unsafe.Pointer(&c.hMeta[0]), c.dMeta, uint64(8*rows)), "download candidate counts"); err != nil {
		return nil, 0, err
	}
	counts := func(r int) int { return int(int32(c.hMeta[r])) }
	first, last := -1, -1
	for r := range rows {
		if n := counts(r); n > 0 && n <= lim {
			if first < 0 {
				first = r
			}
			last = r
		}
	}
	if first >= 0 {
		from, to := 2*first*c.cap, 2*(last*c.cap+counts(last)) // uint32s
		if err := d.check(d.cuMemcpyDtoH(unsafe.Pointer(&c.hRecs[from]), c.dRecs+uint64(4*from), uint64(4*(to-from))), "download candidates"); err != nil {
			return nil, 0, err
		}
	}
	total := 0
	for r := range rows {
		if n := counts(r); n > 0 && n <= lim {
			total += n
		}
	}
	c.out, c.ids, c.vals = c.out[:0], slices.Grow(c.ids[:0], total), slices.Grow(c.vals[:0], total)
	for r := range rows {
		e := runtime.Candidates{Max: math.Float32frombits(c.hMeta[rows+r])}
		n := counts(r)
		if n < 0 || n > lim {
			e.Full = true
			c.out = append(c.out, e)
			continue
		}
		at := len(c.ids)
		for k := range n {
			rec := c.hRecs[2*(r*c.cap+k):]
			if rec[0] >= uint32(vocab) || k > 0 && int32(rec[0]) <= c.ids[len(c.ids)-1] {
				return nil, 0, fmt.Errorf("cuda: candidates: row %d: record %d holds token %d", r, k, rec[0])
			}
			c.ids = append(c.ids, int32(rec[0]))
			c.vals = append(c.vals, math.Float32frombits(rec[1]))
		}
		e.IDs, e.Vals = c.ids[at:len(c.ids):len(c.ids)], c.vals[at:len(c.vals):len(c.vals)]
		c.out = append(c.out, e)
	}
	return c.out, vocab, nil
}

// growCandidates replaces the candidates buffers by ones for rows×limit
// candidates: device memory, and page-locked host copies (Go memory if the
// driver refuses).
func (b *Backend) growCandidates(rows, limit int) error {
	c := &b.cand
	b.freeCandidates()
	for _, a := range []struct {
		p    *uint64
		n    int
		what string
	}{{&c.dOff, 4 * rows, "candidate offsets"}, {&c.dMeta, 8 * rows, "candidate counts"}, {&c.dRecs, 8 * rows * limit, "candidates"}} {
		if err := b.d.check(b.d.cuMemAlloc(a.p, uint64(max(a.n, 256))), fmt.Sprintf("cuMemAlloc %d bytes for %s", a.n, a.what)); err != nil {
			return err
		}
		c.dAllocated = append(c.dAllocated, *a.p)
	}
	pinned := func(n int) unsafe.Pointer { // n 4-byte words
		p, ok := b.hostAlloc(4 * uint64(n))
		if ok {
			c.pinned = append(c.pinned, p)
		}
		return p
	}
	c.hOff = unsafe.Slice((*float32)(pinned(rows)), rows)
	c.hMeta = unsafe.Slice((*uint32)(pinned(2*rows)), 2*rows)
	c.hRecs = unsafe.Slice((*uint32)(pinned(2*rows*limit)), 2*rows*limit)
	c.rows, c.cap = rows, limit
	return nil
}

// freeCandidates releases the candidates buffers (the context is current).
func (b *Backend) freeCandidates() {
	c := &b.cand
	for _, p := range c.dAllocated {
		b.d.cuMemFree(p)
	}
	for _, p := range c.pinned {
		b.d.cuMemFreeHost(p)
	}
	c.dAllocated, c.pinned, c.hOff, c.hMeta, c.hRecs = nil, nil, nil, nil, nil
	c.dOff, c.dMeta, c.dRecs, c.rows, c.cap = 0, 0, 0, 0, 0
}
