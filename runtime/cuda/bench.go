package cuda

import (
	"fmt"
	goruntime "runtime"
	"slices"
	"time"

	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
)

// BenchOptions configure Bench.
type BenchOptions struct {
	Prompt int // prompt tokens per sequence (default 128)
	Decode int // decode steps (default 64)
	Batch  int // sequences decoding together (default 1)
	Runs   int // prefill repetitions for TTFT (default 3; the median counts)
	Device int
	// NoGraphs decodes without CUDA graphs; CopyBytes sizes the bandwidth
	// measurement (default 1 GiB).
	NoGraphs  bool
	CopyBytes int64
}

// BenchResult is what Bench measured on one engine.
type BenchResult struct {
	Device, Image  string
	Batch          int
	TTFTms         float64 // prefill of one prompt to its logits, median
	ITLms          float64 // mean decode step (one token for each sequence)
	TokPerS        float64 // Batch / ITL
	WeightBytes    int64   // bytes of all weights: read once per decode step
	CopyGBs        float64 // device-to-device copy bandwidth (read + write)
	RooflinePct    float64 // WeightBytes / ITL / CopyGBs
	GraphsCaptured int
}

// Bench measures an engine on the GPU: time to first token, decode
// inter-token latency and throughput at a batch size, and the fraction of
// the HBM roofline that decode reaches (weight bytes read per step ÷ step
// time ÷ the measured copy bandwidth).
func Bench(e *engine.Engine, o BenchOptions) (*BenchResult, error) {
	if o.Prompt <= 0 {
		o.Prompt = 128
	}
	if o.Decode <= 0 {
		o.Decode = 64
	}
	if o.Batch <= 0 {
		o.Batch = 1
	}
	if o.Runs <= 0 {
		o.Runs = 3
	}
	const bs = 16
	perSeq := (o.Prompt + o.Decode + bs - 1) / bs
	if o.CopyBytes <= 0 {
		o.CopyBytes = 1 << 30
	}
	be, err := FromEngine(e, Options{Device: o.Device, MaxTokens: max(o.Prompt, o.Batch), BlockSize: bs, NumBlocks: perSeq*o.Batch + perSeq, MaxSeqs: o.Batch, MaxContext: perSeq * bs, NoGraphs: o.NoGraphs})
	if err != nil {
		return nil, err
	}
	defer be.Close()
	r := &BenchResult{Device: be.Name, Image: be.Image, Batch: o.Batch}
	for _, w := range e.Meta.Plan.Weights {
		n, _ := w.Shape.Elems(0, 0)
		r.WeightBytes += n * int64(w.DType.Size())
	}
	vocab := be.vocab
	if vocab == 0 {
		vocab = 1
	}
	tok := func(i int) int32 { return int32((i*7919 + 13) % vocab) }
	blocks := func(s int) []int32 {
		b := make([]int32, perSeq)
		for i := range b {
			b[i] = int32(s*perSeq + i)
		}
		return b
	}
	prefill := func(s int) (time.Duration, error) {
		bt := &runtime.Batch{Seqs: []runtime.SeqView{{Blocks: blocks(s)}}, LogitRows: []int32{int32(o.Prompt - 1)}}
		for i := 0; i < o.Prompt; i++ {
			bt.Tokens = append(bt.Tokens, tok(i+s))
			bt.Positions = append(bt.Positions, int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
		}
		t0 := time.Now()
		if err := be.Step(bt); err != nil {
			return 0, err
		}
		if _, _, err := be.Output("logits"); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	var ttft []time.Duration
	for i := 0; i < o.Runs+1; i++ { // the first run loads the module's code paths
		d, err := prefill(o.Batch) // a spare sequence's blocks
		if err != nil {
			return nil, err
		}
		if i > 0 {
			ttft = append(ttft, d)
		}
	}
	slices.Sort(ttft)
	r.TTFTms = ttft[len(ttft)/2].Seconds() * 1000
	for s := 0; s < o.Batch; s++ {
		if _, err := prefill(s); err != nil {
			return nil, err
		}
	}
	bt := &runtime.Batch{}
	for s := 0; s < o.Batch; s++ {
		bt.Seqs = append(bt.Seqs, runtime.SeqView{Blocks: blocks(s)})
		bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
		bt.LogitRows = append(bt.LogitRows, int32(s))
		bt.Tokens = append(bt.Tokens, 0)
		bt.Positions = append(bt.Positions, 0)
	}
	var total time.Duration
	for i := 0; i < o.Decode; i++ {
		for s := 0; s < o.Batch; s++ {
			bt.Tokens[s], bt.Positions[s] = tok(i+s), int32(o.Prompt+i)
		}
		t0 := time.Now()
		if err := be.Step(bt); err != nil {
			return nil, fmt.Errorf("decode step %d: %w", i, err)
		}
		if _, err := be.Argmax(); err != nil {
			return nil, err
		}
		if i > 0 { // the first step captures the graph
			total += time.Since(t0)
		}
	}
	r.ITLms = total.Seconds() * 1000 / float64(o.Decode-1)
	r.TokPerS = float64(o.Batch) / (r.ITLms / 1000)
	r.GraphsCaptured = len(be.graphs)
	bw, err := be.copyBandwidth(uint64(o.CopyBytes))
	if err != nil {
		return nil, err
	}
	r.CopyGBs = bw / 1e9
	r.RooflinePct = 100 * float64(r.WeightBytes) / (r.ITLms / 1000) / bw
	return r, nil
}

// copyBandwidth times device-to-device copies of n bytes (best of 5) and
// returns bytes moved (read + write) per second.
func (b *Backend) copyBandwidth(n uint64) (float64, error) {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := b.d.check(b.d.cuCtxSetCurrent(b.ctx), "cuCtxSetCurrent"); err != nil {
		return 0, err
	}
	src, err := b.alloc(n, "bandwidth source")
	if err != nil {
		return 0, err
	}
	dst, err := b.alloc(n, "bandwidth destination")
	if err != nil {
		return 0, err
	}
	best := time.Duration(1 << 62)
	for i := 0; i < 6; i++ {
		t0 := time.Now()
		if err := b.d.check(b.d.cuMemcpyDtoD(dst, src, n), "cuMemcpyDtoD"); err != nil {
			return 0, err
		}
		if err := b.d.check(b.d.cuCtxSynchronize(), "cuCtxSynchronize"); err != nil {
			return 0, err
		}
		if d := time.Since(t0); i > 0 && d < best {
			best = d
		}
	}
	return 2 * float64(n) / best.Seconds(), nil
}
