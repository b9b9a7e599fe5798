package cpu

import (
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

// kvPool is one entry pool of a paged cache (KV or latent), rows of f32 or,
// for a bf16 cache, of bfloat16 bits: written rounded to nearest even,
// widened on read, so that attention computes in f32 either way. Offsets
// and lengths are in elements.
type kvPool struct {
	f32 []float32
	b16 []uint16
}

// pool returns entry i of a paged cache.
func (c cache) pool(i int) kvPool {
	if c.b16 != nil {
		return kvPool{b16: c.b16[i]}
	}
	return kvPool{f32: c.entries[i]}
}

// bytes is the cache's storage in bytes.
func (c cache) bytes() int64 {
	var n int64
	for _, e := range c.entries {
		n += 4 * int64(len(e))
	}
	for _, e := range c.b16 {
		n += 2 * int64(len(e))
	}
	return n
}

// put writes src at element off.
func (p kvPool) put(off int, src []float32) {
	if p.b16 != nil {
		dst := p.b16[off : off+len(src)]
		for i, x := range src {
			dst[i] = ir.ToBF16(x)
		}
		return
	}
	copy(p.f32[off:off+len(src)], src)
}

// dot is q · row, the row of len(q) elements at off; kern.Dot and
// kern.DotBF16 sum alike, so a bf16 pool gives the f32 result over the
// rounded values.
func (p kvPool) dot(q []float32, off int) float32 {
	if p.b16 != nil {
		return kern.DotBF16(q, p.b16[off:off+len(q)])
	}
	return kern.Dot(q, p.f32[off:off+len(q)])
}

// axpy adds a · row to acc, the row of len(acc) elements at off.
func (p kvPool) axpy(acc []float32, a float32, off int) {
	if p.b16 != nil {
		for c, h := range p.b16[off : off+len(acc)] {
			acc[c] += a * kern.BF16(h)
		}
		return
	}
	for c, x := range p.f32[off : off+len(acc)] {
		acc[c] += a * x
	}
}
