package passes

import (
	"fmt"
	"slices"

	"github.com/inference-pio/pio/ir"
)

// Memory planning: the arena offsets of a plan's buffers, reused once
// buffers are dead.
//
// A buffer is live from the step that writes it through the last step that
// reads it or any view of it; buffers that are plan outputs stay live to
// the end (the runtime reads them after the step). Buffers are placed first
// fit in order of definition, a step's output while its args are still
// live (so no kernel's output aliases its input), and freed after their
// last reader.
//
// Offsets are OffsetPerT·maxT + OffsetFixed with maxT known only at run
// time, so the two kinds of buffer are planned in separate regions: buffers
// whose size grows with T ([T, ...] and [S, ...], S sized as T) share the
// per-T region [0, ArenaPerT·maxT), placed in per-token bytes; static
// buffers share the fixed region that follows it, at OffsetPerT = ArenaPerT.
// Two per-T buffers whose per-token ranges are disjoint are disjoint for
// every maxT, so the plan is valid for any maxT.

const arenaAlign = 64

func alignUp(n int64) int64 { return (n + arenaAlign - 1) / arenaAlign * arenaAlign }

// bufferBytes returns a buffer's aligned size per token and fixed size.
func bufferBytes(b ir.Buffer) (perT, fixed int64, err error) {
	pt, ft, ok := b.Shape.Split()
	if !ok || (pt != 0 && ft != 0) {
		return 0, 0, fmt.Errorf("buffer %v%v: unsupported shape", b.DType, b.Shape)
	}
	sz := int64(b.DType.Size())
	return alignUp(pt * sz), alignUp(ft * sz), nil
}

// Intermediates returns the arena a plan would need with no reuse: the
// sum of all its buffers (views excluded), per token and fixed.
func Intermediates(p *ir.Plan) (perT, fixed int64) {
	for _, b := range p.Buffers {
		if b.View >= 0 {
			continue
		}
		pt, ft, _ := bufferBytes(b)
		perT += pt
		fixed += ft
	}
	return perT, fixed
}

// planArena assigns the offsets of p's buffers and sets the arena size.
func planArena(p *ir.Plan) error {
	n := len(p.Buffers)
	end := len(p.Steps)
	def := make([]int, n)
	last := make([]int, n)
	for i := range def {
		def[i], last[i] = -1, -1
	}
	for si, s := range p.Steps {
		for _, a := range s.Args {
			if a.Kind == ir.RefBuffer {
				last[p.Root(a.Index)] = si
			}
		}
		if def[s.Out] < 0 {
			def[s.Out] = si
		}
		last[s.Out] = max(last[s.Out], si)
	}
	for _, o := range p.Outputs {
		last[p.Root(o.Buffer)] = end
	}
	// frees[si] lists the buffers whose last reader is step si.
	frees := make([][]int, end+1)
	for b := range n {
		if p.Buffers[b].View < 0 && def[b] >= 0 {
			frees[last[b]] = append(frees[last[b]], b)
		}
	}
	var perT, fixed region
	offT, offF := make([]int64, n), make([]int64, n)
	isT := make([]bool, n)
	for si, s := range p.Steps {
		if def[s.Out] == si {
			pt, ft, err := bufferBytes(p.Buffers[s.Out])
			if err != nil {
				return err
			}
			if pt > 0 {
				isT[s.Out] = true
				offT[s.Out] = perT.alloc(s.Out, pt)
			} else {
				offF[s.Out] = fixed.alloc(s.Out, ft)
			}
		}
		for _, b := range frees[si] {
			if isT[b] {
				perT.free(b)
			} else {
				fixed.free(b)
			}
		}
	}
	p.ArenaPerT, p.ArenaFixed = perT.high, fixed.high
	for i := range p.Buffers {
		r := p.Root(i)
		b := &p.Buffers[i]
		if isT[r] {
			b.OffsetPerT, b.OffsetFixed = offT[r], 0
		} else {
			b.OffsetPerT, b.OffsetFixed = p.ArenaPerT, offF[r]
		}
	}
	return nil
}

// region is a first-fit allocator over one address range.
type region struct {
	live []span // sorted by offset
	high int64  // highest end ever used
}

type span struct {
	off, size int64
	buf       int
}

func (r *region) alloc(buf int, size int64) int64 {
	var off int64
	i := 0
	for ; i < len(r.live); i++ {
		if r.live[i].off-off >= size {
			break
		}
		off = max(off, r.live[i].off+r.live[i].size)
	}
	r.live = slices.Insert(r.live, i, span{off: off, size: size, buf: buf})
	r.high = max(r.high, off+size)
	return off
}

func (r *region) free(buf int) {
	if i := slices.IndexFunc(r.live, func(s span) bool { return s.buf == buf }); i >= 0 {
		r.live = slices.Delete(r.live, i, i+1)
	}
}
