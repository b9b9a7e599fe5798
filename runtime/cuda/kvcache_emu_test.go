package cuda

import (
	"context"
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/kvcache"
)

// kvOpsPlan has the three paged-cache writers and readers side by side:
// attention (kv_append + attn_prefill / attn_decode), qkv_attention (its
// prep kernel writes k and v) and mla_attention (latent_append), each over
// its own cache of dtype kv. q, k, v, c_kv and k_rope are embedding rows,
// so both backends cache bit-identical values (qkv_attention's k after
// RoPE excepted, which the two compute alike to the last bit or so).
func kvOpsPlan(t *testing.T, kv ir.DType) *ir.Plan {
	t.Helper()
	const V, Hq, Hkv, D, H, R, Dr = 23, 4, 2, 32, 2, 32, 16
	b := ir.NewBuilder("kvops")
	tok := b.Input("tokens", ir.I32, ir.T)
	pos := b.Input("positions", ir.I32, ir.T)
	rows := func(name string, shape ...ir.Dim) *ir.Value {
		n := ir.Dim(1)
		for _, d := range shape {
			n *= d
		}
		return b.Reshape(b.Embedding(b.Weight(name, ir.F32, V, n), tok), append([]ir.Dim{ir.T}, shape...)...)
	}
	scale := 1 / math.Sqrt(D)
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, DType: kv, Entries: []ir.Shape{ir.Sh(Hkv, D), ir.Sh(Hkv, D)}})
	y := b.Attention(rows("q", Hq, D), rows("k", Hkv, D), rows("v", Hkv, D), c, scale)
	b.Output("attention", b.Reshape(y, ir.T, Hq*D))

	c2 := b.Cache(ir.CacheSpec{Kind: ir.CacheKV, DType: kv, Entries: []ir.Shape{ir.Sh(Hkv, D), ir.Sh(Hkv, D)}})
	y2 := b.Op(ir.OpQKVAttention, []*ir.Value{rows("qkv", (Hq+2*Hkv)*D), pos},
		ir.Ints("heads", Hq, Hkv), ir.Int("head_dim", D), ir.Float("theta", 10000), ir.Int("rotary_dims", D),
		ir.Str("style", "neox"), ir.Int("cache", int64(c2)), ir.Float("scale", scale))
	b.Output("qkv_attention", b.Reshape(y2, ir.T, Hq*D))

	c3 := b.Cache(ir.CacheSpec{Kind: ir.CacheLatent, DType: kv, Entries: []ir.Shape{ir.Sh(R), ir.Sh(Dr)}})
	y3 := b.MLAAttention(rows("q_lat", H, R), rows("q_rope", H, Dr), rows("c_kv", R), rows("k_rope", Dr), c3, 1/math.Sqrt(R+Dr))
	b.Output("mla_attention", b.Reshape(y3, ir.T, H*R))
	p := loweredPlan(t, b)
	return p
}

// kvOpsWeights fills the plan's f32 tables with values of full mantissas,
// so that bf16 rounding changes them.
func kvOpsWeights(p *ir.Plan) ([]Weight, []cpu.Weight) {
	var ws []Weight
	var cws []cpu.Weight
	for i, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		data := make([]byte, 4*n)
		for j := range n {
			v := float32(math.Sin(float64(j)*0.7311+float64(i)*1.93)) * 1.7
			binary.LittleEndian.PutUint32(data[4*j:], math.Float32bits(v))
		}
		shape := []int64{int64(w.Shape[0]), int64(w.Shape[1])}
		ws = append(ws, Weight{DType: w.DType, Shape: shape, Data: data})
		cws = append(cws, cpu.Weight{DType: w.DType, Shape: shape, Data: data})
	}
	return ws, cws
}

// TestEmulatedBF16KVOps: with bf16 caches, the CUDA kernels that write and
// read paged caches (attention's append, prefill tiles and decode splits,
// qkv_attention's prep, MLA's latent append and attention) give the CPU
// backend's outputs within 1e-5 (f32 compute over the same rounded values,
// summed in another order): a prefill of 270 tokens of one sequence and 5
// of another, then decode steps of both past the first 256-position
// split. The bf16 caches do round: the CPU's f32-cache outputs differ.
func TestEmulatedBF16KVOps(t *testing.T) {
	gxx := useFakeDriver(t)
	p, p32 := kvOpsPlan(t, ir.BF16), kvOpsPlan(t, ir.F32)
	for _, c := range p.Caches {
		if c.DType != ir.BF16 {
			t.Fatalf("%v cache of %v", c.Kind, c.DType)
		}
	}
	ws, cws := kvOpsWeights(p)
	opt := Options{MaxTokens: 288, NumBlocks: 40, BlockSize: 16, MaxSeqs: 2}
	gpu, err := New(p, ws, emuKernels(t, gxx, p), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer gpu.Close()
	copt := cpu.Options{MaxTokens: opt.MaxTokens, NumBlocks: opt.NumBlocks, BlockSize: opt.BlockSize, MaxSeqs: opt.MaxSeqs}
	ref, err := cpu.New(p, cws, copt)
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()
	_, cws32 := kvOpsWeights(p32)
	ref32, err := cpu.New(p32, cws32, copt)
	if err != nil {
		t.Fatal(err)
	}
	defer ref32.Close()

	seqs := []runtime.SeqView{{}, {}}
	for i := range 20 {
		seqs[0].Blocks = append(seqs[0].Blocks, int32(2*i+1)) // interleaved with the other sequence's blocks
		seqs[1].Blocks = append(seqs[1].Blocks, int32(2*i))
	}
	batch := func(chunks ...[2]int) *runtime.Batch { // chunks: (start, n) for sequence 0, 1, ...
		bt := &runtime.Batch{Seqs: seqs}
		for s, ch := range chunks {
			for i := range ch[1] {
				p := ch[0] + i
				bt.Tokens = append(bt.Tokens, int32((p*7+s*3)%23))
				bt.Positions = append(bt.Positions, int32(p))
				bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
			}
			bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
		}
		return bt
	}
	names := []string{"attention", "qkv_attention", "mla_attention"}
	steps := []*runtime.Batch{batch([2]int{0, 270}, [2]int{0, 5}), batch([2]int{270, 1}, [2]int{5, 1}), batch([2]int{271, 1}, [2]int{6, 1})}
	for si, bt := range steps {
		outs := stepBoth(t, bt, names, gpu, ref, ref32)
		for ni, n := range names {
			if e := golden.RelErr(outs[0][ni], outs[1][ni]); e > 1e-5 || len(outs[0][ni]) != len(outs[1][ni]) {
				t.Errorf("step %d %s: emulated CUDA vs CPU, bf16 caches: relative error %.3g", si, n, e)
			}
			if e := golden.RelErr(outs[1][ni], outs[2][ni]); e < 1e-4 {
				t.Errorf("step %d %s: the bf16 cache's output is within %.3g of the f32 cache's: no rounding?", si, n, e)
			}
		}
	}
}

// TestEmulatedBF16KVGolden: pioc's default engine for a bf16 checkpoint has
// bf16 paged caches (qwen3-a: kv; glm4moelite: MLA's latent cache), and the
// emulated CUDA backend runs it like the CPU backend does: logits of every
// golden prompt within 2e-3, greedy continuations identical.
//
// Not 1e-4 as with f32 caches: each backend rounds to bf16 the K/V it
// computed, and those differ in the last bits (summation order); a value
// that close to a bf16 rounding boundary is cached one bf16 step (2^-8
// relative) apart on the two, and the later layers' K/V carry and multiply
// such flips, to a few 1e-4 of the logits' scale (measured up to 5e-4).
// 2e-3 bounds that with a 4× margin; a kernel error (a wrong slot, head,
// rounding or dtype) is off by far more.
func TestEmulatedBF16KVGolden(t *testing.T) {
	gxx := useFakeDriver(t)
	for _, model := range []string{"qwen3-a", "glm4moelite"} {
		t.Run(model, func(t *testing.T) {
			gpu, ref, g, e := emuBackendsKV(t, gxx, model, ir.BF16, ir.DInvalid, false)
			paged := 0
			for _, c := range e.Meta.Plan.Caches {
				if c.Kind.Paged() {
					paged++
					if c.DType != ir.BF16 {
						t.Fatalf("default bf16 engine: %v cache of %v", c.Kind, c.DType)
					}
				}
			}
			if paged == 0 {
				t.Fatal("no paged cache")
			}
			for pi, p := range g.Prompts {
				got, want := forward(t, gpu, p.IDs), forward(t, ref, p.IDs)
				if e := golden.RelErr(got, want); e > 2e-3 {
					t.Errorf("prompt %d: logits vs CPU backend: relative error %.3g", pi, e)
				}
			}
			p := g.Prompts[len(g.Prompts)-1]
			var toks [2][]int32
			for i, be := range []runtime.Backend{gpu, ref} {
				gen := modeltest.NewGenerator(be, kvcache.NewAllocator(64, 4), 64)
				var err error
				if toks[i], err = gen.Generate(context.Background(), p.IDs, modeltest.GenerateOptions{MaxTokens: 8}, nil); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(toks[0], toks[1]) {
				t.Errorf("greedy: emulated CUDA %v, CPU %v", toks[0], toks[1])
			}
		})
	}
}
