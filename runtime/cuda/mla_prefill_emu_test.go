package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// mlaWidths are the widths of one mla_attention: heads, latent, rope.
type mlaWidths struct{ H, R, Dr int }

// mlaOpPlan is one mla_attention of widths w (scale 1/√256) over a latent
// cache of dtype kv, its four operands step inputs.
func mlaOpPlan(t *testing.T, w mlaWidths, kv ir.DType) *ir.Plan {
	t.Helper()
	H, R, Dr := ir.Dim(w.H), ir.Dim(w.R), ir.Dim(w.Dr)
	b := ir.NewBuilder("mla-prefill")
	in := func(name string, d ...ir.Dim) *ir.Value {
		return b.Input(name, ir.F32, append([]ir.Dim{ir.T}, d...)...)
	}
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheLatent, DType: kv, Entries: []ir.Shape{ir.Sh(R), ir.Sh(Dr)}})
	y := b.MLAAttention(in("q_lat", H, R), in("q_rope", H, Dr), in("c_kv", R), in("k_rope", Dr), c, 1/math.Sqrt(256))
	b.Output("y", b.Reshape(y, ir.T, H*R))
	p := loweredPlan(t, b)
	return p
}

// TestEmulatedMLAPrefill: GLM-4.7-Flash's tiled latent-attention prefill
// (mla_prefill: blocks of a tile's tokens × heads streaming latent chunks
// through shared memory, online softmax) gives the CPU backend's output
// within 1e-5 relative (f32 compute both ways; the CPU sums its softmax in
// f64 and in one pass), with f32 and bf16 caches: one step prefilling 300
// tokens of one sequence and 70 of another (many tiles, a short last
// tile), then a step continuing both prompts after their cached positions
// (45 and 33 tokens, tiles that start mid-sequence and mid-chunk), then a
// decode step of both (the split kernel reads what the prefills cached).
// Besides GLM-4.7-Flash's widths (20 heads, kv_lora_rank 512,
// qk_rope_head_dim 64: blocks of 2 tokens × 20 heads), widths that are not
// multiples of a warp (blocks of 10 tokens × 6 heads, a tile's second
// block partial) and 24 heads (three head groups of 8, blocks of 8 tokens).
func TestEmulatedMLAPrefill(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, c := range []struct {
		w  mlaWidths
		kv ir.DType
	}{{mlaWidths{20, 512, 64}, ir.F32}, {mlaWidths{20, 512, 64}, ir.BF16}, {mlaWidths{6, 72, 24}, ir.F32}, {mlaWidths{24, 32, 8}, ir.BF16}} {
		t.Run(fmt.Sprintf("%dx%d+%d/%v", c.w.H, c.w.R, c.w.Dr, c.kv), func(t *testing.T) {
			p := mlaOpPlan(t, c.w, c.kv)
			opt := Options{MaxTokens: 370, NumBlocks: 48, BlockSize: 16, MaxSeqs: 2}
			gpu, ref := planBackends(t, gxx, p, nil, nil, opt)
			seqs := []runtime.SeqView{{}, {}}
			for i := range 24 {
				seqs[0].Blocks = append(seqs[0].Blocks, int32(47-2*i)) // interleaved, not in order
				seqs[1].Blocks = append(seqs[1].Blocks, int32(2*i))
			}
			rng := rand.New(rand.NewPCG(3, 5))
			normal := normals(rng)
			batch := func(chunks ...[2]int) *runtime.Batch { // (start, n) for sequence 0, 1
				bt := &runtime.Batch{Seqs: seqs}
				for s, ch := range chunks {
					for i := range ch[1] {
						bt.Tokens = append(bt.Tokens, 0)
						bt.Positions = append(bt.Positions, int32(ch[0]+i))
						bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
					}
					bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
				}
				T := len(bt.Tokens)
				bt.Inputs = map[string]runtime.Input{"q_lat": {F32: normal(T * c.w.H * c.w.R)}, "q_rope": {F32: normal(T * c.w.H * c.w.Dr)},
					"c_kv": {F32: normal(T * c.w.R)}, "k_rope": {F32: normal(T * c.w.Dr)}}
				return bt
			}
			for si, bt := range []*runtime.Batch{batch([2]int{0, 300}, [2]int{0, 70}), batch([2]int{300, 45}, [2]int{70, 33}), batch([2]int{345, 1}, [2]int{103, 1})} {
				outs := stepBoth(t, bt, []string{"y"}, gpu, ref)
				e := golden.RelErr(outs[0][0], outs[1][0])
				t.Logf("step %d (%d tokens): relative error %.3g", si, len(bt.Tokens), e)
				if e > 1e-5 || len(outs[0][0]) != len(outs[1][0]) || len(outs[0][0]) != len(bt.Tokens)*c.w.H*c.w.R {
					t.Errorf("step %d: emulated CUDA vs CPU relative error %.3g (%d and %d values)", si, e, len(outs[0][0]), len(outs[1][0]))
				}
				if e := perToken(outs[0][0], outs[1][0], c.w.H*c.w.R); e > 1e-5 {
					t.Errorf("step %d: a token's output has relative error %.3g", si, e)
				}
			}
		})
	}
}

// perToken is the largest relative error of one token's row of width w.
func perToken(got, want []float32, w int) float64 {
	worst := 0.0
	for i := 0; i+w <= min(len(got), len(want)); i += w {
		worst = max(worst, golden.RelErr(got[i:i+w], want[i:i+w]))
	}
	return worst
}
