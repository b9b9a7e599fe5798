package cuda

import (
	"fmt"
	"unsafe"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/runtime"
)

// State caches (ir.CacheState: the Gated DeltaNet conv and recurrent
// states) hold one slot per sequence, MaxSeqs slots, each the cache's one
// f32 entry; a sequence's slot is its runtime.SeqView.Slot, which the state
// kernels read from the PSlots array (i32[MaxSeqs], uploaded every step).
// A run starting at position 0 starts from zero state (the kernels do
// that); a run at position p > 0 must find its slot holding the state after
// exactly p positions, which the host checks here before anything runs
// (the CPU backend's rule: a prefix taken from the prefix cache without its
// state is an error, not silently wrong output).
type stateRT struct {
	on    bool    // the plan has state caches
	at    []int   // per slot: the position its states have reached (-1: none)
	slots []int32 // the step's slots, by sequence
	dev   uint64  // device i32[MaxSeqs]
}

// isStateCache reports whether c is a state cache the backend allocates:
// one f32 entry per slot.
func isStateCache(c ir.CacheSpec) bool {
	return c.Kind == ir.CacheState && len(c.Entries) == 1 && c.DType == ir.F32
}

// cacheRows is the number of entries cache c holds: a position per paged
// slot for KV caches, a slot per sequence for state caches.
func cacheRows(c ir.CacheSpec, paged uint64, o Options) uint64 {
	if c.Kind == ir.CacheState {
		return uint64(o.MaxSeqs)
	}
	return paged
}

// seqWork reports whether a launch takes the per-sequence workspace
// (PSeqWork: Launch.Workspace floats per sequence, not per decode split).
func seqWork(l *abi.Launch) bool {
	for _, p := range l.Params {
		if p.Kind == abi.PSeqWork {
			return true
		}
	}
	return false
}

// allocState allocates the slots array when the plan has state caches, and
// the per-sequence workspace (the chunked delta rule's) when a launch asks
// for one.
func (b *Backend) allocState() error {
	var ws int64
	for i := range b.launches {
		if l := &b.launches[i].l; seqWork(l) {
			ws = max(ws, l.Workspace)
		}
	}
	if ws > 0 {
		var err error
		if b.a.seqWork, err = b.alloc(uint64(ws)*uint64(b.opt.MaxSeqs)*4, "the per-sequence workspace"); err != nil {
			return err
		}
	}
	for _, c := range b.plan.Caches {
		b.st.on = b.st.on || c.Kind == ir.CacheState
	}
	if !b.st.on {
		return nil
	}
	b.st.at = make([]int, b.opt.MaxSeqs)
	for i := range b.st.at {
		b.st.at[i] = -1
	}
	b.st.slots = make([]int32, b.opt.MaxSeqs)
	var err error
	b.a.slots, err = b.alloc(uint64(4*b.opt.MaxSeqs), "state slots")
	b.st.dev = b.a.slots
	return err
}

// checkState validates the batch's slots (in range, one sequence each) and
// that every run continues from the state its slot holds.
func (b *Backend) checkState(bt *runtime.Batch) error {
	if !b.st.on {
		return nil
	}
	used := make(map[int32]int, len(bt.Seqs))
	for s, sv := range bt.Seqs {
		if sv.Slot < 0 || int(sv.Slot) >= b.opt.MaxSeqs {
			return fmt.Errorf("cuda: sequence %d: state slot %d outside the %d slots", s, sv.Slot, b.opt.MaxSeqs)
		}
		if o, ok := used[sv.Slot]; ok {
			return fmt.Errorf("cuda: sequences %d and %d share state slot %d", o, s, sv.Slot)
		}
		used[sv.Slot] = s
		b.st.slots[s] = sv.Slot
	}
	for t := range bt.Tokens {
		if t > 0 && bt.SeqOfToken[t-1] == bt.SeqOfToken[t] {
			continue
		}
		slot, pos := bt.Seqs[bt.SeqOfToken[t]].Slot, int(bt.Positions[t])
		if have := b.st.at[slot]; pos != 0 && have != pos {
			h := "no state"
			if have >= 0 {
				h = fmt.Sprintf("the state after %d positions", have)
			}
			return fmt.Errorf("cuda: a sequence continues at position %d in state slot %d, which holds %s "+
				"(models with state caches cannot reuse a cached prefix without its state)", pos, slot, h)
		}
	}
	return nil
}

// uploadState copies the step's slots to the device.
func (b *Backend) uploadState() error {
	if !b.st.on {
		return nil
	}
	return b.d.check(b.d.cuMemcpyHtoD(b.st.dev, unsafe.Pointer(&b.st.slots[0]), uint64(4*len(b.st.slots))), "upload state slots")
}

// advanceState records the positions the step's runs reached.
func (b *Backend) advanceState(bt *runtime.Batch) {
	if !b.st.on {
		return
	}
	for t := range bt.Tokens {
		if t+1 < len(bt.Tokens) && bt.SeqOfToken[t+1] == bt.SeqOfToken[t] {
			continue
		}
		b.st.at[bt.Seqs[bt.SeqOfToken[t]].Slot] = int(bt.Positions[t]) + 1
	}
}
