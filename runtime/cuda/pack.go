package cuda

import (
	"fmt"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/engine"
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

// launchOf converts the engine's launch to codegen's.
func launchOf(el engine.KernelLaunch) cg.Launch {
	l := cg.Launch{
		Step: int(el.Step), Kernel: el.Kernel, Block: int(el.Block), Mode: cg.Mode(el.Mode),
		Rows: cg.ExprOf(el.Rows), MinRows: int(el.MinRows), MaxRows: int(el.MaxRows), Workspace: el.Workspace,
	}
	for i, g := range el.Grid {
		l.Grid[i] = cg.ExprOf(g)
	}
	for _, p := range el.Params {
		l.Params = append(l.Params, cg.ParamOf(p))
	}
	return l
}

// checkLaunch validates an engine launch against the plan, so that
// resolving its parameters cannot index out of range.
func checkLaunch(p *ir.Plan, l *cg.Launch, nCaches int) error {
	if l.Step < 0 || l.Step >= len(p.Steps) {
		return fmt.Errorf("launch of %s: step %d outside the plan's %d", l.Kernel, l.Step, len(p.Steps))
	}
	if l.Block <= 0 || l.Block > 1024 {
		return fmt.Errorf("launch of %s: block of %d threads", l.Kernel, l.Block)
	}
	s := p.Steps[l.Step]
	for i, prm := range l.Params {
		switch prm.Kind {
		case cg.PArg:
			if int(prm.Index) >= len(s.Args) {
				return fmt.Errorf("launch of %s: parameter %d is arg %d of a step with %d", l.Kernel, i, prm.Index, len(s.Args))
			}
		case cg.PCacheK, cg.PCacheV:
			if int(prm.Index) >= nCaches {
				return fmt.Errorf("launch of %s: parameter %d names cache %d of %d", l.Kernel, i, prm.Index, nCaches)
			}
		case cg.POut, cg.PT, cg.PS, cg.PPositions, cg.PSeqOfToken, cg.PBlockTables, cg.PMaxBlocks, cg.PBlockSize, cg.PTiles, cg.PWorkspace, cg.PSplits, cg.PSlots, cg.PSeqWork:
		default:
			return fmt.Errorf("launch of %s: parameter %d has unknown kind %d", l.Kernel, i, prm.Kind)
		}
	}
	return nil
}

// pack writes a launch's parameter values into vals (one 8-byte slot per
// parameter: a device pointer, or an int32 in the low four bytes, which is
// where a little-endian kernel reads it).
func pack(l *cg.Launch, s ir.Step, a *addrs, d dynamic, vals []uint64) {
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
		case cg.PArg:
			v = ref(s.Args[p.Index])
		case cg.POut:
			v = a.buffers[s.Out]
		case cg.PT:
			v = i32(d.t)
		case cg.PS:
			v = i32(d.s)
		case cg.PSplits:
			v = i32(d.splits)
		case cg.PCacheK:
			v = a.cacheK[p.Index]
		case cg.PCacheV:
			v = a.cacheV[p.Index]
		case cg.PPositions:
			v = a.positions
		case cg.PSeqOfToken:
			v = a.seqOfToken
		case cg.PBlockTables:
			v = a.blockTables
		case cg.PTiles:
			v = a.tiles
		case cg.PWorkspace:
			v = a.workspace
		case cg.PSlots:
			v = a.slots
		case cg.PSeqWork:
			v = a.seqWork
		case cg.PMaxBlocks:
			v = i32(a.maxBlocks)
		case cg.PBlockSize:
			v = i32(a.blockSize)
		}
		vals[i] = v
	}
}

// grid evaluates a launch's grid for one step; ok is false when a
// dimension is empty (the launch is skipped) or too large.
func grid(l *cg.Launch, t, s, tiles, splits int64) (g [3]uint32, ok bool) {
	for i, e := range l.Grid {
		v := e.Eval(t, s, tiles, splits)
		if v <= 0 || v > 1<<31-1 || (i > 0 && v > 65535) {
			return g, false
		}
		g[i] = uint32(v)
	}
	return g, true
}
