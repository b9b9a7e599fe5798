package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	goruntime "runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/cpu/kern"
	"github.com/inference-pio/pio/runtime/engine"
)

// benchCmd measures engines: load time, prefill and decode speed, latency
// percentiles, peak RSS, the memory-bandwidth roofline of decode and, with
// --ref, the agreement of next-token distributions with a reference engine.
// Several engines give one table (make bench).
func benchCmd() *cli.Command {
	flags := []cli.Flag{
		&cli.IntFlag{Name: "prompt", Value: 128, Usage: "prompt tokens for the prefill measurement (random ids)"},
		&cli.IntFlag{Name: "decode", Value: 32, Usage: "decode steps per measurement"},
		&cli.IntFlag{Name: "batch", Value: 4, Usage: "sequences decoded together for the batch-B measurement"},
		&cli.IntFlag{Name: "runs", Value: 3, Usage: "repetitions; the median is reported"},
		&cli.StringFlag{Name: "ref", Usage: "reference `ENGINE` (e.g. the bf16 build) for top-1 agreement and mean KL over the prompt"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON (one object per engine, in an array) instead of a table"},
		&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the measurements to `FILE` (go tool pprof)"},
	}
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure load time, prefill and decode speed, latency percentiles, peak RSS and the bandwidth roofline",
		ArgsUsage: "ENGINE...",
		Description: "Decoding is greedy (no sampling flags); the KV cache is sized for the prompt, the decode steps and --batch.\n" +
			"With --device cuda[:N] (engines built with --target cuda) it measures TTFT, decode ITL and tok/s at batch 1 and --batch\n" +
			"and the % of the HBM roofline; the GPU backend sizes its own steps and cache, so the CPU-only flags are refused.",
		Flags: append(flags, pickFlags(engineFlags(false), "threads", "max-step-tokens", "block-size", "device")...),
		Action: func(c *cli.Context) error {
			o, err := parseBench(c)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			if o.threads == 0 {
				o.threads = goruntime.GOMAXPROCS(0)
			}
			logw := errWriter(c)
			kind, dev, _ := parseDevice(o.device)
			if kind == "cuda" {
				return benchCUDA(c.App.Writer, logw, c.Args().Slice(), dev, o)
			}
			fmt.Fprintf(logw, "%d threads, kernels %s\n", o.threads, kern.Features())
			var refLogits []float32
			if o.ref != "" {
				var err error
				if refLogits, _, err = promptLogits(o.ref, o); err != nil {
					return fmt.Errorf("bench: --ref: %w", err)
				}
			}
			if o.cpuprofile != "" {
				f, err := os.Create(o.cpuprofile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			var results []*benchResult
			for _, path := range c.Args().Slice() {
				fmt.Fprintf(logw, "bench %s\n", path)
				r, err := benchEngine(path, o, refLogits)
				if err != nil {
					return fmt.Errorf("bench %s: %w", path, err)
				}
				results = append(results, r)
			}
			if o.json {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(results)
			}
			printTable(c.App.Writer, results, o)
			return nil
		},
	}
}

// benchOptions is what `piort bench`'s flags say.
type benchOptions struct {
	prompt, decode, batch, runs int
	threads, maxStep, blockSize int // CPU only; threads 0 = all
	ref, cpuprofile, device     string
	json                        bool
}

// parseBench reads `piort bench`'s flags; with --device cuda it refuses
// those only the CPU measurements use.
func parseBench(c *cli.Context) (benchOptions, error) {
	o := benchOptions{prompt: c.Int("prompt"), decode: c.Int("decode"), batch: c.Int("batch"), runs: c.Int("runs"),
		ref: c.String("ref"), cpuprofile: c.String("cpuprofile"), json: c.Bool("json")}
	if c.NArg() < 1 {
		return o, fmt.Errorf("want at least one ENGINE")
	}
	if o.prompt < 1 || o.decode < 1 || o.batch < 1 || o.runs < 1 {
		return o, fmt.Errorf("--prompt, --decode, --batch and --runs must be >= 1")
	}
	ec, err := engineOptions(c)
	if err != nil {
		return o, err
	}
	o.threads, o.maxStep, o.blockSize, o.device = ec.opt.Threads, ec.opt.MaxStepTokens, ec.opt.BlockSize, ec.device
	if kind, _, _ := parseDevice(o.device); kind == "cuda" {
		for _, n := range []string{"max-step-tokens", "block-size", "ref", "cpuprofile"} {
			if c.IsSet(n) {
				return o, fmt.Errorf("--%s applies to --device cpu only", n)
			}
		}
	}
	return o, nil
}

// benchResult is one engine's measurements (JSON field names are stable).
type benchResult struct {
	Engine        string  `json:"engine"`
	WeightDTypes  string  `json:"weight_dtypes"`
	FileBytes     int64   `json:"file_bytes"`
	Threads       int     `json:"threads"`
	LoadMs        float64 `json:"load_ms"` // engine.Open + cpu.FromEngine, page cache warm, median
	PromptTokens  int     `json:"prompt_tokens"`
	PrefillTokS   float64 `json:"prefill_tok_s"`
	TTFTMs        float64 `json:"ttft_ms"` // prefill of the prompt + first token
	DecodeTokS    float64 `json:"decode_tok_s"`
	ITLP50Ms      float64 `json:"itl_p50_ms"`
	ITLP90Ms      float64 `json:"itl_p90_ms"`
	ITLP99Ms      float64 `json:"itl_p99_ms"`
	Batch         int     `json:"batch"`
	BatchTokS     float64 `json:"batch_decode_tok_s"` // tokens/s over all sequences
	BytesPerToken int64   `json:"bytes_per_token"`    // weights + KV cache read by one batch-1 decode step
	CopyGBs       float64 `json:"copy_gb_s"`
	ReadGBs       float64 `json:"read_gb_s"`
	RooflineTokS  float64 `json:"roofline_tok_s"` // read bandwidth / bytes per token
	RooflineFrac  float64 `json:"roofline_fraction"`
	CopyRoofFrac  float64 `json:"copy_roofline_fraction"` // decode tok/s ÷ (copy bandwidth / bytes per token)
	PeakRSSBytes  int64   `json:"peak_rss_bytes"`         // of this process so far (includes mapped engine pages)
	Top1          float64 `json:"top1_agreement,omitempty"`
	MeanKL        float64 `json:"mean_kl,omitempty"`
}

func benchEngine(path string, o benchOptions, refLogits []float32) (*benchResult, error) {
	r := &benchResult{Engine: path, Threads: o.threads, PromptTokens: o.prompt, Batch: o.batch}
	var bw bandwidth // best of the measurements taken right before each decode run
	if st, err := os.Stat(path); err == nil {
		r.FileBytes = st.Size()
	}
	// Load: warm the page cache once, then time Open + FromEngine.
	ctx := o.prompt + o.decode + 1
	bs := o.blockSize
	perSeq := (ctx + bs - 1) / bs
	opt := cpu.Options{MaxTokens: min(o.maxStep, o.prompt), BlockSize: bs, NumBlocks: perSeq * max(o.batch, 1), MaxSeqs: max(o.batch, 1), Threads: o.threads}
	if err := warmPageCache(path); err != nil {
		return nil, err
	}
	var loads []float64
	var e *engine.Engine
	var be *cpu.Backend
	for i := 0; i < o.runs; i++ {
		if be != nil {
			be.Close()
			e.Close()
		}
		t0 := time.Now()
		var err error
		if e, err = engine.Open(path, engine.OpenOptions{}); err != nil {
			return nil, err
		}
		if be, err = cpu.FromEngine(e, opt); err != nil {
			e.Close()
			return nil, err
		}
		loads = append(loads, ms(time.Since(t0)))
	}
	defer e.Close()
	defer be.Close()
	r.LoadMs = median(loads)
	r.WeightDTypes = weightDTypes(e.Meta.Plan)

	rng := rand.New(rand.NewPCG(1, 2))
	vocab := vocabOf(e.Meta.Plan)
	prompt := make([]int32, o.prompt)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(vocab))
	}
	s := &stepper{be: be, blockSize: bs, perSeq: perSeq}

	var prefills, ttfts, decodes, batches []float64
	var itl []float64
	for run := 0; run < o.runs; run++ {
		// Batch 1: prefill in chunks, first token, then decode.
		t0 := time.Now()
		logits, err := s.prefill(0, prompt, o.maxStep)
		if err != nil {
			return nil, err
		}
		prefills = append(prefills, float64(len(prompt))/time.Since(t0).Seconds())
		tok := int32(argmax(logits))
		ttfts = append(ttfts, ms(time.Since(t0)))
		// The machine may be shared: measure the bandwidth next to each
		// decode run, so the roofline fraction compares like with like.
		b := measureBandwidth(o.threads)
		bw.copy, bw.read = max(bw.copy, b.copy), max(bw.read, b.read)
		pos := len(prompt)
		td := time.Now()
		for i := 0; i < o.decode; i++ {
			ts := time.Now()
			out, err := s.decode([]int32{tok}, []int32{int32(pos)})
			if err != nil {
				return nil, err
			}
			tok = int32(argmax(out))
			pos++
			itl = append(itl, ms(time.Since(ts)))
		}
		decodes = append(decodes, float64(o.decode)/time.Since(td).Seconds())

		// Batch B: B sequences with a short prompt each, decoded together.
		short := prompt[:min(len(prompt), 16)]
		toks := make([]int32, o.batch)
		positions := make([]int32, o.batch)
		for b := 0; b < o.batch; b++ {
			out, err := s.prefill(b, short, o.maxStep)
			if err != nil {
				return nil, err
			}
			toks[b], positions[b] = int32(argmax(out)), int32(len(short))
		}
		tb := time.Now()
		for i := 0; i < o.decode; i++ {
			out, err := s.decode(toks, positions)
			if err != nil {
				return nil, err
			}
			for b := range toks {
				toks[b] = int32(argmax(out[b*vocab : (b+1)*vocab]))
				positions[b]++
			}
		}
		batches = append(batches, float64(o.batch*o.decode)/time.Since(tb).Seconds())
	}
	r.PrefillTokS, r.TTFTMs, r.DecodeTokS, r.BatchTokS = median(prefills), median(ttfts), median(decodes), median(batches)
	r.ITLP50Ms, r.ITLP90Ms, r.ITLP99Ms = percentile(itl, 50), percentile(itl, 90), percentile(itl, 99)
	r.BytesPerToken = bytesPerToken(e.Meta.Plan, len(prompt)+o.decode/2)
	r.CopyGBs, r.ReadGBs = bw.copy/1e9, bw.read/1e9
	r.RooflineTokS = bw.read / float64(r.BytesPerToken)
	r.RooflineFrac = r.DecodeTokS / r.RooflineTokS
	r.CopyRoofFrac = r.DecodeTokS / (bw.copy / float64(r.BytesPerToken))
	r.PeakRSSBytes = peakRSS()
	if refLogits != nil {
		be.Close()
		e.Close()
		got, _, err := promptLogits(path, o)
		if err != nil {
			return nil, err
		}
		r.Top1, r.MeanKL = compareLogits(refLogits, got, vocab)
	}
	return r, nil
}

// stepper drives a backend directly: sequence b owns blocks
// [b·perSeq, (b+1)·perSeq) of every paged cache.
type stepper struct {
	be        *cpu.Backend
	blockSize int
	perSeq    int
	batch     runtime.Batch
	blocks    [][]int32
}

func (s *stepper) seqBlocks(b int) []int32 {
	for len(s.blocks) <= b {
		i := len(s.blocks)
		bl := make([]int32, s.perSeq)
		for j := range bl {
			bl[j] = int32(i*s.perSeq + j)
		}
		s.blocks = append(s.blocks, bl)
	}
	return s.blocks[b]
}

// prefill runs prompt as sequence b from position 0 and returns the last logits.
func (s *stepper) prefill(b int, prompt []int32, maxStep int) ([]float32, error) {
	var out []float32
	for start := 0; start < len(prompt); start += maxStep {
		n := min(maxStep, len(prompt)-start)
		bt := &s.batch
		bt.Tokens = append(bt.Tokens[:0], prompt[start:start+n]...)
		bt.Positions, bt.SeqOfToken = bt.Positions[:0], bt.SeqOfToken[:0]
		for i := 0; i < n; i++ {
			bt.Positions = append(bt.Positions, int32(start+i))
			bt.SeqOfToken = append(bt.SeqOfToken, 0)
		}
		bt.Seqs = append(bt.Seqs[:0], runtime.SeqView{Blocks: s.seqBlocks(b)})
		bt.LogitRows = append(bt.LogitRows[:0], int32(n-1))
		if err := s.be.Step(bt); err != nil {
			return nil, err
		}
		var err error
		if out, _, err = s.be.Output("logits"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decode runs one token for each of sequences 0..len(toks)-1.
func (s *stepper) decode(toks, positions []int32) ([]float32, error) {
	bt := &s.batch
	bt.Tokens = append(bt.Tokens[:0], toks...)
	bt.Positions = append(bt.Positions[:0], positions...)
	bt.SeqOfToken, bt.Seqs, bt.LogitRows = bt.SeqOfToken[:0], bt.Seqs[:0], bt.LogitRows[:0]
	for b := range toks {
		bt.SeqOfToken = append(bt.SeqOfToken, int32(b))
		bt.Seqs = append(bt.Seqs, runtime.SeqView{Blocks: s.seqBlocks(b)})
		bt.LogitRows = append(bt.LogitRows, int32(b))
	}
	if err := s.be.Step(bt); err != nil {
		return nil, err
	}
	out, _, err := s.be.Output("logits")
	return out, err
}

// promptLogits runs the bench prompt through engine path in one step and
// returns the logits of every position [prompt, vocab].
func promptLogits(path string, o benchOptions) ([]float32, int, error) {
	e, err := engine.Open(path, engine.OpenOptions{})
	if err != nil {
		return nil, 0, err
	}
	defer e.Close()
	bs := o.blockSize
	be, err := cpu.FromEngine(e, cpu.Options{MaxTokens: o.prompt, BlockSize: bs, NumBlocks: (o.prompt + bs - 1) / bs, MaxSeqs: 1, Threads: o.threads})
	if err != nil {
		return nil, 0, err
	}
	defer be.Close()
	vocab := vocabOf(e.Meta.Plan)
	rng := rand.New(rand.NewPCG(1, 2))
	bt := &runtime.Batch{Seqs: []runtime.SeqView{{}}}
	for i := 0; i < o.prompt; i++ {
		bt.Tokens = append(bt.Tokens, int32(rng.IntN(vocab)))
		bt.Positions = append(bt.Positions, int32(i))
		bt.SeqOfToken = append(bt.SeqOfToken, 0)
		bt.LogitRows = append(bt.LogitRows, int32(i))
		if i%bs == 0 {
			bt.Seqs[0].Blocks = append(bt.Seqs[0].Blocks, int32(i/bs))
		}
	}
	if err := be.Step(bt); err != nil {
		return nil, 0, err
	}
	out, _, err := be.Output("logits")
	if err != nil {
		return nil, 0, err
	}
	return slices.Clone(out), vocab, nil
}

// compareLogits returns the top-1 agreement and the mean KL(ref ‖ got) in
// nats of the rows of two [rows, vocab] logit matrices.
func compareLogits(ref, got []float32, vocab int) (top1, kl float64) {
	rows := min(len(ref), len(got)) / vocab
	for r := 0; r < rows; r++ {
		a, b := ref[r*vocab:(r+1)*vocab], got[r*vocab:(r+1)*vocab]
		if argmax(a) == argmax(b) {
			top1++
		}
		la, lb := logSumExp(a), logSumExp(b)
		for i := range a {
			lp, lq := float64(a[i])-la, float64(b[i])-lb
			kl += math.Exp(lp) * (lp - lq)
		}
	}
	return top1 / float64(rows), kl / float64(rows)
}

func logSumExp(x []float32) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, float64(v))
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(float64(v) - m)
	}
	return m + math.Log(s)
}

func argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// vocabOf returns the rows of the embedding table the tokens index (the
// first embedding step's table).
func vocabOf(p *ir.Plan) int {
	for _, s := range p.Steps {
		if s.Op == ir.OpEmbedding && s.Args[0].Kind == ir.RefWeight {
			return int(p.Weights[s.Args[0].Index].Shape[0])
		}
	}
	return 1
}

// bytesPerToken estimates the bytes one batch-1 decode step reads at
// context ctx: every weight a step other than an embedding reads, in full;
// one row of a table only embeddings read; and the K/V cache entries of
// ctx positions, in the caches' dtype.
func bytesPerToken(p *ir.Plan, ctx int) int64 {
	full := make([]bool, len(p.Weights))
	row := make([]bool, len(p.Weights))
	for _, s := range p.Steps {
		for ai, a := range s.Args {
			if a.Kind != ir.RefWeight {
				continue
			}
			if s.Op == ir.OpEmbedding && ai == 0 {
				row[a.Index] = true
			} else {
				full[a.Index] = true
			}
		}
	}
	var n int64
	for i, w := range p.Weights {
		elems, _ := w.Shape.Elems(0, 0)
		size := elems * int64(w.DType.Size())
		switch {
		case full[i]:
			n += size
		case row[i] && len(w.Shape) == 2:
			n += int64(w.Shape[1]) * int64(w.DType.Size())
		}
	}
	for _, c := range p.Caches {
		if !c.Kind.Paged() {
			continue
		}
		for _, e := range c.Entries {
			elems, _ := e.Elems(0, 0)
			n += elems * int64(c.DType.Size()) * int64(ctx)
		}
	}
	return n
}

func weightDTypes(p *ir.Plan) string {
	var names []string
	for _, w := range p.Weights {
		if s := w.DType.String(); !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	slices.Sort(names)
	return fmt.Sprint(names)
}

type bandwidth struct{ copy, read float64 } // bytes/s

var (
	bwElems  = 64 << 20   // float32s per bandwidth array: 256 MiB, far beyond caches (tests shrink it)
	bwArrays [2][]float32 // measureBandwidth's, allocated once
)

// measureBandwidth measures a STREAM-like copy, c[i] = a[i], and a read
// (Σ a[i]·a[i] with the AVX2 dot kernel) over 256 MiB arrays split across
// threads goroutines, best of 5 each. Copy counts reads and writes
// (STREAM's convention); decode only reads weights, so the roofline uses
// the read figure and the table shows both.
func measureBandwidth(threads int) bandwidth {
	n := bwElems
	if len(bwArrays[0]) != n {
		bwArrays = [2][]float32{make([]float32, n), make([]float32, n)}
		for i := range bwArrays[0] {
			bwArrays[0][i] = float32(i & 1023)
		}
	}
	a, c := bwArrays[0], bwArrays[1]
	run := func(f func(lo, hi int)) float64 {
		best := math.Inf(1)
		for rep := 0; rep < 5; rep++ {
			var wg sync.WaitGroup
			t0 := time.Now()
			chunk := (n + threads - 1) / threads
			for t := 0; t < threads; t++ {
				lo, hi := t*chunk, min((t+1)*chunk, n)
				wg.Add(1)
				go func() {
					defer wg.Done()
					f(lo, hi)
				}()
			}
			wg.Wait()
			best = math.Min(best, time.Since(t0).Seconds())
		}
		return best
	}
	var bw bandwidth
	bw.copy = 2 * 4 * float64(n) / run(func(lo, hi int) { copy(c[lo:hi], a[lo:hi]) })
	sums := make([]float32, threads*16) // a cache line apart
	bw.read = 4 * float64(n) / run(func(lo, hi int) { sums[lo/((n+threads-1)/threads)*16] += kern.Dot(a[lo:hi], a[lo:hi]) })
	return bw
}

// warmPageCache reads the file once so that load times are page-cache loads.
func warmPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// peakRSS returns the process's peak resident set (getrusage; Linux reports KiB).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Maxrss * 1024
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

func median(v []float64) float64 { return percentile(v, 50) }

// percentile returns the p-th percentile (nearest rank) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func printTable(w io.Writer, rs []*benchResult, o benchOptions) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "engine\tweights\tfile MiB\tload ms\tprefill tok/s\tTTFT ms\tdecode tok/s\tITL p50/p90/p99 ms\tB=%d tok/s\tMB/token\tread GB/s\troofline tok/s\tof roofline (read/copy)\tpeak RSS MiB\ttop-1\tKL\t\n", o.batch)
	for _, r := range rs {
		acc := "-\t-"
		if r.Top1 != 0 || r.MeanKL != 0 {
			acc = fmt.Sprintf("%.3f\t%.5f", r.Top1, r.MeanKL)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%.1f\t%.0f\t%.2f\t%.0f/%.0f/%.0f\t%.2f\t%.0f\t%.1f\t%.2f\t%.0f%% / %.0f%%\t%.0f\t%s\t\n",
			r.Engine, r.WeightDTypes, float64(r.FileBytes)/(1<<20), r.LoadMs, r.PrefillTokS, r.TTFTMs, r.DecodeTokS,
			r.ITLP50Ms, r.ITLP90Ms, r.ITLP99Ms, r.BatchTokS, float64(r.BytesPerToken)/1e6, r.ReadGBs, r.RooflineTokS, 100*r.RooflineFrac, 100*r.CopyRoofFrac,
			float64(r.PeakRSSBytes)/(1<<20), acc)
	}
	tw.Flush()
	if len(rs) > 0 {
		fmt.Fprintf(w, "%d threads, prompt %d tokens, %d decode steps, median of %d runs; read and copy (STREAM, read+write bytes) bandwidth measured before each decode run, best kept; roofline = read bandwidth / MB per token; kernels %s\n",
			rs[0].Threads, o.prompt, o.decode, o.runs, kern.Features())
	}
}
