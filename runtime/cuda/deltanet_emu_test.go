package cuda

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
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
	// An f32 KV cache: see emuBackends.
	e, g := emuEngine(t, gxx, "qwen3next/dense", compiler.Options{DType: dt, KVDType: ir.F32, NoFuse: noFuse})
	gpu, ref := engineBackends(t, e, Options{MaxTokens: 160, NumBlocks: 96, BlockSize: 4, MaxSeqs: 4})
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
					gen := modeltest.NewGenerator(be, kvcache.NewAllocator(96, 4), 128)
					toks[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: n}, nil)
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

// TestEmulatedDeltaRuleOps runs the DeltaNet templates at widths the tiny
// model does not reach against the CPU backend: dk = 64 (the recurrent
// kernel splits each state column over P = 2 threads), chunks of 16 (a
// 40-token prefill crosses two chunk boundaries, a 17-token one ends in a
// one-token chunk), GQA (two value heads per key head), a conv with bf16
// weights; then recurrent decode steps, all in state slot 1.
func TestEmulatedDeltaRuleOps(t *testing.T) {
	gxx := useFakeDriver(t)
	const hk, hv, dk, dv, c = 1, 2, 64, 32, 24
	b := ir.NewBuilder("deltarule")
	tokens := b.Input("tokens", ir.I32, ir.T)
	b.Input("positions", ir.I32, ir.T)
	emb := func(name string, n int) *ir.Value { return b.Embedding(b.Weight(name, ir.BF16, 16, ir.Dim(n)), tokens) }
	q := b.Reshape(emb("wq", hk*dk), ir.T, hk, dk)
	k := b.Reshape(emb("wk", hk*dk), ir.T, hk, dk)
	v := b.Reshape(emb("wv", hv*dv), ir.T, hv, dv)
	g := b.DeltaNetDecay(emb("wa", hv), b.Weight("alog", ir.F32, hv), b.Weight("dtb", ir.BF16, hv))
	beta := b.Sigmoid(emb("wb", hv))
	rc := b.Cache(ir.CacheSpec{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(hv, dk, dv)}})
	cc := b.Cache(ir.CacheSpec{Kind: ir.CacheState, DType: ir.F32, Entries: []ir.Shape{ir.Sh(c, 3)}})
	b.Output("y", b.GatedDeltaRule(q, k, v, g, beta, rc, ir.DeltaRuleOpts{Scale: 0.125, L2Norm: true, Chunk: 16}))
	b.Output("conv", b.Conv1DCausal(emb("wx", c), b.Weight("wc", ir.BF16, c, 1, 4), cc, true))
	p := loweredPlan(t, b)
	var ws []Weight
	var cws []cpu.Weight
	for i, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		data := make([]byte, n*int64(w.DType.Size()))
		for j := int64(0); j < n; j++ {
			v := float32(((j*7919+int64(i)*31)%97)-48) / 64
			bits := math.Float32bits(v)
			if w.DType == ir.BF16 {
				binary.LittleEndian.PutUint16(data[2*j:], uint16(bits>>16))
			} else {
				binary.LittleEndian.PutUint32(data[4*j:], bits)
			}
		}
		shape := make([]int64, len(w.Shape))
		for j, d := range w.Shape {
			shape[j] = int64(d)
		}
		ws = append(ws, Weight{DType: w.DType, Shape: shape, Data: data})
		cws = append(cws, cpu.Weight{DType: w.DType, Shape: shape, Data: data})
	}
	opt := Options{MaxTokens: 64, MaxSeqs: 2, BlockSize: 16, NumBlocks: 8}
	gpu, err := New(p, ws, emuKernels(t, gxx, p), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	ref, err := cpu.New(p, cws, cpu.Options{MaxTokens: 64, MaxSeqs: 2, BlockSize: 16, NumBlocks: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	for _, prompt := range []int{40, 17} {
		pos := 0
		for _, n := range []int{prompt, 1, 1, 1} {
			bt := &runtime.Batch{Seqs: []runtime.SeqView{{Blocks: []int32{0, 1, 2, 3}, Slot: 1}}, LogitRows: []int32{0}}
			for i := 0; i < n; i++ {
				bt.Tokens = append(bt.Tokens, int32((pos+i)*5%16))
				bt.Positions = append(bt.Positions, int32(pos+i))
				bt.SeqOfToken = append(bt.SeqOfToken, 0)
			}
			for _, out := range []string{"y", "conv"} {
				var outs [2][]float32
				for i, be := range []runtime.Backend{gpu, ref} {
					if out == "y" {
						if err := be.Step(bt); err != nil {
							t.Fatal(err)
						}
					}
					o, _, err := be.Output(out)
					if err != nil {
						t.Fatal(err)
					}
					outs[i] = slices.Clone(o)
				}
				if e := golden.RelErr(outs[0], outs[1]); e > 1e-5 || len(outs[0]) == 0 {
					t.Errorf("prompt %d, %d tokens at %d: %s: emulated CUDA vs CPU relative error %.3g (%d values)", prompt, n, pos, out, e, len(outs[0]))
				}
			}
			pos += n
		}
	}
}
