package cuda

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// deltaNetBackends builds the tiny dense Qwen3-Next and returns the
// emulated CUDA backend and the CPU backend over it (room for the 131-token
// golden prompt in one step: chunked prefill crosses two chunk boundaries).
func deltaNetBackends(t *testing.T, gxx string, dt ir.DType, noFuse bool) (*Backend, *cpu.Backend, *golden.Model, *engine.Engine) {
	t.Helper()
	g, err := golden.Load("qwen3next/dense")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: path, DType: dt, NoFuse: noFuse}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(path, engine.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Meta.Kernels = emuKernels(t, gxx, e.Meta.Plan)
	gpu, err := FromEngine(e, Options{MaxTokens: 160, NumBlocks: 96, BlockSize: 4, MaxSeqs: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gpu.Close() })
	ref, err := cpu.FromEngine(e, cpu.Options{MaxTokens: 160, NumBlocks: 96, BlockSize: 4, MaxSeqs: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ref.Close() })
	return gpu, ref, g, e
}

// TestEmulatedDeltaNet: on the tiny dense Qwen3-Next, the emulated CUDA
// kernels (DeltaNet conv, chunked and recurrent delta rule, gated
// attention) give the CPU backend's logits (1e-4: f32 compute both ways)
// and transformers' (the CPU golden tolerance, 1e-4) for every golden
// prompt in one step, and greedy decoding after prefill gives the CPU's and
// transformers' tokens.
func TestEmulatedDeltaNet(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, c := range []struct {
		dt     ir.DType
		noFuse bool
	}{{ir.F32, false}, {ir.BF16, false}, {ir.F32, true}} {
		t.Run(fmt.Sprintf("%v/nofuse=%v", c.dt, c.noFuse), func(t *testing.T) {
			gpu, ref, g, e := deltaNetBackends(t, gxx, c.dt, c.noFuse)
			for pi, p := range g.Prompts {
				if len(p.IDs) > 160 {
					continue
				}
				got, want := forward(t, gpu, p.IDs), forward(t, ref, p.IDs)
				if e := golden.RelErr(got, want); e > 1e-4 {
					t.Errorf("prompt %d (%d tokens): logits vs CPU backend: relative error %.3g", pi, len(p.IDs), e)
				}
				if e := golden.RelErr(got, p.Logits); e > 1e-4 || len(p.Logits) != len(got) {
					t.Errorf("prompt %d (%d tokens): logits vs transformers (%d values, want %d): relative error %.3g", pi, len(p.IDs), len(got), len(p.Logits), e)
				}
			}
			p := g.Prompts[1] // 70 tokens: prefill over a chunk boundary, then recurrent decode
			for _, graphs := range []bool{true, false} {
				gpu2, err := FromEngine(e, Options{MaxTokens: 160, NumBlocks: 96, BlockSize: 4, MaxSeqs: 4, NoGraphs: !graphs})
				if err != nil {
					t.Fatal(err)
				}
				n := min(len(p.Greedy), 6)
				var toks [2][]int32
				for i, be := range []runtime.Backend{gpu2, ref} {
					gen := runtime.NewGenerator(be, kvcache.NewAllocator(96, 4), 128)
					toks[i], err = gen.Generate(context.Background(), p.IDs, runtime.GenerateOptions{MaxTokens: n}, nil)
					if err != nil {
						t.Fatal(err)
					}
				}
				gpu2.Close()
				if !slices.Equal(toks[0], toks[1]) {
					t.Errorf("greedy (graphs %v): emulated CUDA %v, CPU %v", graphs, toks[0], toks[1])
				}
				if !slices.Equal(toks[0], p.Greedy[:n]) {
					t.Errorf("greedy (graphs %v): emulated CUDA %v, transformers %v", graphs, toks[0], p.Greedy[:n])
				}
			}
		})
	}
}

// TestEmulatedDeltaNetBatch: two sequences of different lengths in state
// slots 3 and 1 (one 67 tokens: a chunk and a 3-token chunk; one 5) prefill
// in one step and decode together (the recurrent kernel, S = 2), matching
// the CPU backend step by step; a sequence continuing at a position its slot
// does not hold is refused before anything runs, and a run from position 0
// reuses a slot from zero state.
func TestEmulatedDeltaNetBatch(t *testing.T) {
	gxx := useFakeDriver(t)
	gpu, ref, _, _ := deltaNetBackends(t, gxx, ir.F32, false)
	var a []int32
	for i := range 67 {
		a = append(a, int32((i*37+11)%120))
	}
	b := []int32{11, 4, 8, 100, 7}
	slots := []int32{3, 1}
	blocks := [][]int32{{7, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23}, {4, 5, 6, 0}}
	step := func(be runtime.Backend, toks [][]int32, start []int) ([]float32, error) {
		var bt runtime.Batch
		for s, ts := range toks {
			for i, tok := range ts {
				bt.Tokens = append(bt.Tokens, tok)
				bt.Positions = append(bt.Positions, int32(start[s]+i))
				bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
			}
			bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
			bt.Seqs = append(bt.Seqs, runtime.SeqView{Blocks: blocks[s], Slot: slots[s]})
		}
		if err := be.Step(&bt); err != nil {
			return nil, err
		}
		out, _, err := be.Output("logits")
		return slices.Clone(out), err
	}
	must := func(l []float32, err error) []float32 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for round := range 2 { // the second round reuses the slots from position 0
		got, want := must(step(gpu, [][]int32{a, b}, []int{0, 0})), must(step(ref, [][]int32{a, b}, []int{0, 0}))
		if e := golden.RelErr(got, want); e > 1e-4 {
			t.Fatalf("round %d: batched prefill: relative error %.3g", round, e)
		}
		pos := []int{len(a), len(b)}
		next := [][]int32{{3}, {6}}
		for i := range 3 {
			got, want := must(step(gpu, next, pos)), must(step(ref, next, pos))
			if e := golden.RelErr(got, want); e > 1e-4 {
				t.Fatalf("round %d: decode step %d: relative error %.3g", round, i, e)
			}
			next = [][]int32{{int32(argmax(want[:len(want)/2]))}, {int32(argmax(want[len(want)/2:]))}}
			pos[0]++
			pos[1]++
		}
		if _, err := step(gpu, next, []int{pos[0] + 1, pos[1]}); err == nil || !strings.Contains(err.Error(), "state slot 3") {
			t.Errorf("round %d: a run past its slot's state: got %v", round, err)
		}
	}
	slots = []int32{2, 2}
	if _, err := step(gpu, [][]int32{a[:3], b}, []int{0, 0}); err == nil || !strings.Contains(err.Error(), "share state slot") {
		t.Errorf("two sequences in one slot: got %v", err)
	}
}
