package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/runtime"
)

// The per-step metadata block: one i32 array, uploaded with one copy per
// step, whose regions are at fixed offsets (in i32 units) for a backend of
// maxT tokens, maxSeqs sequences and maxBlocks blocks per sequence:
//
//	tokens       [maxT]
//	positions    [maxT]
//	logit_rows   [maxT]
//	seq_of_token [maxT]
//	tiles        [maxT, 3]           (seq, first token, tokens) per prefill tile
//	block_tables [maxSeqs, maxBlocks]
type layout struct {
	maxT, maxSeqs, maxBlocks int
}

func (l layout) tokens() int      { return 0 }
func (l layout) positions() int   { return l.maxT }
func (l layout) logitRows() int   { return 2 * l.maxT }
func (l layout) seqOfToken() int  { return 3 * l.maxT }
func (l layout) tiles() int       { return 4 * l.maxT }
func (l layout) blockTables() int { return 7 * l.maxT }
func (l layout) size() int        { return 7*l.maxT + l.maxSeqs*l.maxBlocks }

// fill writes batch b into m (len layout.size()) and returns the number of
// prefill tiles of at most tile tokens. The batch has been checked.
func (l layout) fill(m []int32, b *runtime.Batch, tile int) (tiles int) {
	t := len(b.Tokens)
	copy(m[l.tokens():], b.Tokens)
	copy(m[l.positions():], b.Positions)
	copy(m[l.logitRows():], b.LogitRows)
	copy(m[l.seqOfToken():], b.SeqOfToken)
	// Tiles: each sequence's run of tokens, cut every tile tokens.
	tp := m[l.tiles():]
	for i := 0; i < t; {
		s := b.SeqOfToken[i]
		j := i
		for j < t && b.SeqOfToken[j] == s && j-i < tile {
			j++
		}
		tp[3*tiles], tp[3*tiles+1], tp[3*tiles+2] = s, int32(i), int32(j-i)
		tiles++
		i = j
	}
	bt := m[l.blockTables():]
	for s, sv := range b.Seqs {
		row := bt[s*l.maxBlocks : (s+1)*l.maxBlocks]
		n := copy(row, sv.Blocks)
		clear(row[n:])
	}
	return tiles
}

// checkBatch validates a batch so that no kernel can index out of range:
// lengths agree, 1 ≤ len(Seqs) ≤ T ≤ maxT, len(Seqs) ≤ maxSeqs, each
// sequence's tokens are one contiguous run at consecutive positions, token
// ids are below vocab (when known), logit rows index the step (one per
// token when the plan wants T of them), and (with paged caches) every position's block is in
// the table and the pool.
func checkBatch(b *runtime.Batch, maxT, maxSeqs, numBlocks, blockSize, maxBlocks, vocab int, rowsPerToken, paged bool) error {
	if b == nil {
		return fmt.Errorf("cuda: nil batch")
	}
	T, S := len(b.Tokens), len(b.Seqs)
	switch {
	case T == 0:
		return fmt.Errorf("cuda: empty batch")
	case T > maxT:
		return fmt.Errorf("cuda: batch of %d tokens exceeds MaxTokens %d", T, maxT)
	case len(b.Positions) != T || len(b.SeqOfToken) != T:
		return fmt.Errorf("cuda: batch of %d tokens has %d positions and %d sequence indices", T, len(b.Positions), len(b.SeqOfToken))
	case S == 0 || S > T:
		return fmt.Errorf("cuda: batch of %d tokens has %d sequences, want 1 to %d", T, S, T)
	case S > maxSeqs:
		return fmt.Errorf("cuda: batch has %d sequences, more than MaxSeqs %d", S, maxSeqs)
	case len(b.LogitRows) > T || len(b.LogitRows) == 0:
		return fmt.Errorf("cuda: batch has %d logit rows, want 1 to %d", len(b.LogitRows), T)
	case rowsPerToken && len(b.LogitRows) != T:
		return fmt.Errorf("cuda: batch has %d logit rows, the plan wants one per token (%d)", len(b.LogitRows), T)
	}
	for i, r := range b.LogitRows {
		if r < 0 || int(r) >= T {
			return fmt.Errorf("cuda: logit row %d is %d, outside the batch of %d tokens", i, r, T)
		}
	}
	for s, sv := range b.Seqs {
		if len(sv.Blocks) > maxBlocks {
			return fmt.Errorf("cuda: sequence %d has %d blocks, more than the %d a sequence may hold", s, len(sv.Blocks), maxBlocks)
		}
		for i, blk := range sv.Blocks {
			if blk < 0 || int(blk) >= numBlocks {
				return fmt.Errorf("cuda: sequence %d block %d is %d, outside the pool of %d", s, i, blk, numBlocks)
			}
		}
	}
	seen := make([]bool, S)
	for t := 0; t < T; t++ {
		s, pos, tok := b.SeqOfToken[t], b.Positions[t], b.Tokens[t]
		if s < 0 || int(s) >= S {
			return fmt.Errorf("cuda: token %d: sequence %d, outside the batch's %d sequences", t, s, S)
		}
		if pos < 0 {
			return fmt.Errorf("cuda: token %d: negative position %d", t, pos)
		}
		if vocab > 0 && (tok < 0 || int(tok) >= vocab) {
			return fmt.Errorf("cuda: token %d: id %d outside the vocabulary of %d", t, tok, vocab)
		}
		if t > 0 && b.SeqOfToken[t-1] == s {
			if pos != b.Positions[t-1]+1 {
				return fmt.Errorf("cuda: token %d: sequence %d jumps from position %d to %d", t, s, b.Positions[t-1], pos)
			}
		} else {
			if seen[s] {
				return fmt.Errorf("cuda: token %d: the tokens of sequence %d are not contiguous", t, s)
			}
			seen[s] = true
		}
		if need := int(pos) / blockSize; paged && need >= len(b.Seqs[s].Blocks) {
			return fmt.Errorf("cuda: token %d: sequence %d has %d blocks, position %d needs %d", t, s, len(b.Seqs[s].Blocks), pos, need+1)
		}
	}
	return nil
}
