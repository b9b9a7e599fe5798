package cpu

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// check validates a batch against the plan and the options, so that no
// kernel can index out of range: lengths agree, 1 ≤ len(Seqs) ≤ T ≤
// MaxTokens and len(Seqs) ≤ MaxSeqs, every sequence's tokens are one
// contiguous run at consecutive positions ≥ 0, token ids index the
// embedding table, there are at most T logit rows (exactly T where the plan
// declares logit_rows i32[T]) and each indexes the step, and (with paged caches) every position has a block in its table,
// every block it needs is in the pool and the position is below
// NumBlocks·BlockSize; (with state caches) slots are distinct and below
// MaxSeqs.
func (b *Backend) check(bt *runtime.Batch) error {
	if bt == nil {
		return fmt.Errorf("cpu: nil batch")
	}
	T, S := len(bt.Tokens), len(bt.Seqs)
	switch {
	case T == 0:
		return fmt.Errorf("cpu: empty batch")
	case T > b.opt.MaxTokens:
		return fmt.Errorf("cpu: batch of %d tokens exceeds MaxTokens %d", T, b.opt.MaxTokens)
	case len(bt.Positions) != T || len(bt.SeqOfToken) != T:
		return fmt.Errorf("cpu: batch of %d tokens has %d positions and %d sequence indices", T, len(bt.Positions), len(bt.SeqOfToken))
	case S == 0 || S > T:
		return fmt.Errorf("cpu: batch of %d tokens has %d sequences, want 1 to %d", T, S, T)
	case S > b.opt.MaxSeqs:
		return fmt.Errorf("cpu: batch has %d sequences, more than MaxSeqs %d", S, b.opt.MaxSeqs)
	}
	for i := range b.inputs {
		if b.binds[i] != bindLogitRows {
			continue
		}
		if b.inputs[i].shape[0] == ir.T && len(bt.LogitRows) != T {
			return fmt.Errorf("cpu: batch has %d logit rows, the plan wants one per token (%d)", len(bt.LogitRows), T)
		}
	}
	if len(bt.LogitRows) > T {
		return fmt.Errorf("cpu: batch has %d logit rows, more than its %d tokens", len(bt.LogitRows), T)
	}
	for i, r := range bt.LogitRows {
		if r < 0 || int(r) >= T {
			return fmt.Errorf("cpu: logit row %d is %d, outside the batch of %d tokens", i, r, T)
		}
	}

	seen := b.seen[:S]
	clear(seen)
	ctx := int64(b.opt.NumBlocks) * int64(b.opt.BlockSize)
	for t := 0; t < T; t++ {
		s, pos, tok := bt.SeqOfToken[t], bt.Positions[t], bt.Tokens[t]
		if s < 0 || int(s) >= S {
			return fmt.Errorf("cpu: token %d: sequence %d, outside the batch's %d sequences", t, s, S)
		}
		if pos < 0 {
			return fmt.Errorf("cpu: token %d: negative position %d", t, pos)
		}
		if b.vocab > 0 && (tok < 0 || int(tok) >= b.vocab) {
			return fmt.Errorf("cpu: token %d: id %d outside the vocabulary of %d", t, tok, b.vocab)
		}
		if t > 0 && bt.SeqOfToken[t-1] == s {
			if pos != bt.Positions[t-1]+1 {
				return fmt.Errorf("cpu: token %d: sequence %d jumps from position %d to %d", t, s, bt.Positions[t-1], pos)
			}
		} else {
			if seen[s] {
				return fmt.Errorf("cpu: token %d: the tokens of sequence %d are not contiguous", t, s)
			}
			seen[s] = true
		}
		if !b.paged {
			continue
		}
		if int64(pos) >= ctx {
			return fmt.Errorf("cpu: token %d: position %d beyond the cache's %d positions", t, pos, ctx)
		}
		blocks := bt.Seqs[s].Blocks
		need := int(pos) / b.opt.BlockSize
		if need >= len(blocks) {
			return fmt.Errorf("cpu: token %d: sequence %d has %d blocks, position %d needs %d", t, s, len(blocks), pos, need+1)
		}
		// Check the blocks the token reads: all up to its own, once per run
		// (at its first token) and then only the block each new position enters.
		from := need
		if t == 0 || bt.SeqOfToken[t-1] != s {
			from = 0
		}
		for i := from; i <= need; i++ {
			if blk := blocks[i]; blk < 0 || int(blk) >= b.opt.NumBlocks {
				return fmt.Errorf("cpu: token %d: sequence %d block %d is %d, outside the pool of %d", t, s, i, blk, b.opt.NumBlocks)
			}
		}
	}
	if b.state {
		seen = b.seen[:b.opt.MaxSeqs]
		clear(seen)
		for i, sv := range bt.Seqs {
			if sv.Slot < 0 || int(sv.Slot) >= b.opt.MaxSeqs {
				return fmt.Errorf("cpu: sequence %d: slot %d outside 0..%d", i, sv.Slot, b.opt.MaxSeqs-1)
			}
			if seen[sv.Slot] {
				return fmt.Errorf("cpu: sequence %d: slot %d used twice", i, sv.Slot)
			}
			seen[sv.Slot] = true
		}
	}
	return nil
}
