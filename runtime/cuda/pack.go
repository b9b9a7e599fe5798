package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// addrs are the device addresses and sizes a launch's parameters resolve
// to; they are fixed from New to Close.
type addrs struct {
	buffers     []uint64 // by plan buffer
	weights     []uint64 // by plan weight
	inputs      []uint64 // by plan input
	cacheK      []uint64 // by cache: the first entry's pool
	cacheV      []uint64 // by cache: the second entry's pool (0 if none)
	positions   uint64
	seqOfToken  uint64
	blockTables uint64
	tiles       uint64
	workspace   uint64
	maxBlocks   int32
	blockSize   int32
	slots       uint64 // i32[MaxSeqs] state slots (state.go)
	seqWork     uint64 // f32 scratch per sequence (state.go)
}

// dynamic are the per-step values.
type dynamic struct {
	t, s, splits int32
}

// checkLaunch validates an engine launch against the plan, so that
// resolving its parameters cannot index out of range.
func checkLaunch(p *ir.Plan, l *abi.Launch, nCaches int) error {
	if l.Step < 0 || l.Step >= len(p.Steps) {
		return fmt.Errorf("launch of %s: step %d outside the plan's %d", l.Kernel, l.Step, len(p.Steps))
	}
	if l.Block <= 0 || l.Block > 1024 {
		return fmt.Errorf("launch of %s: block of %d threads", l.Kernel, l.Block)
	}
	s := p.Steps[l.Step]
	for i, prm := range l.Params {
		switch prm.Kind {
		case abi.PArg:
			if int(prm.Index) >= len(s.Args) {
				return fmt.Errorf("launch of %s: parameter %d is arg %d of a step with %d", l.Kernel, i, prm.Index, len(s.Args))
			}
		case abi.PCacheK, abi.PCacheV:
			if int(prm.Index) >= nCaches {
				return fmt.Errorf("launch of %s: parameter %d names cache %d of %d", l.Kernel, i, prm.Index, nCaches)
			}
		default:
			if !prm.Kind.Known() {
				return fmt.Errorf("launch of %s: parameter %d has unknown kind %d", l.Kernel, i, prm.Kind)
			}
		}
	}
	return nil
}

// pack writes a launch's parameter values into vals (one 8-byte slot per
// parameter: a device pointer, or an int32 in the low four bytes, which is
// where a little-endian kernel reads it).
func pack(l *abi.Launch, s ir.Step, a *addrs, d dynamic, vals []uint64) {
	ref := func(r ir.Ref) uint64 {
		switch r.Kind {
		case ir.RefBuffer:
			return a.buffers[r.Index]
		case ir.RefWeight:
			return a.weights[r.Index]
		case ir.RefInput:
			return a.inputs[r.Index]
		}
		return 0
	}
	i32 := func(v int32) uint64 { return uint64(uint32(v)) }
	for i, p := range l.Params {
		var v uint64
		switch p.Kind {
		case abi.PArg:
			v = ref(s.Args[p.Index])
		case abi.POut:
			v = a.buffers[s.Out]
		case abi.PT:
			v = i32(d.t)
		case abi.PS:
			v = i32(d.s)
		case abi.PSplits:
			v = i32(d.splits)
		case abi.PCacheK:
			v = a.cacheK[p.Index]
		case abi.PCacheV:
			v = a.cacheV[p.Index]
		case abi.PPositions:
			v = a.positions
		case abi.PSeqOfToken:
			v = a.seqOfToken
		case abi.PBlockTables:
			v = a.blockTables
		case abi.PTiles:
			v = a.tiles
		case abi.PWorkspace:
			v = a.workspace
		case abi.PSlots:
			v = a.slots
		case abi.PSeqWork:
			v = a.seqWork
		case abi.PMaxBlocks:
			v = i32(a.maxBlocks)
		case abi.PBlockSize:
			v = i32(a.blockSize)
		}
		vals[i] = v
	}
}

// grid evaluates a launch's grid for one step; ok is false when a
// dimension is empty (the launch is skipped) or too large.
func grid(l *abi.Launch, t, s, tiles, splits int64) (g [3]uint32, ok bool) {
	for i, e := range l.Grid {
		v := e.Eval(t, s, tiles, splits)
		if v <= 0 || v > 1<<31-1 || (i > 0 && v > 65535) {
			return g, false
		}
		g[i] = uint32(v)
	}
	return g, true
}
