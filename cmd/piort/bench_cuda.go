package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/inference-pio/pio/runtime/cuda"
	"github.com/inference-pio/pio/runtime/engine"
)

// cudaBenchResult is one engine at one batch size on a GPU (JSON field
// names are stable).
type cudaBenchResult struct {
	Engine      string  `json:"engine"`
	Device      string  `json:"device"`
	Image       string  `json:"image"` // the kernel image loaded: sm_90a, compute_90 (PTX JIT), ...
	Batch       int     `json:"batch"`
	TTFTMs      float64 `json:"ttft_ms"`
	ITLMs       float64 `json:"itl_ms"`
	DecodeTokS  float64 `json:"decode_tok_s"`
	WeightBytes int64   `json:"weight_bytes"`
	CopyGBs     float64 `json:"copy_gb_s"`
	RooflinePct float64 `json:"roofline_pct"` // weight bytes ÷ ITL ÷ copy bandwidth
	Graphs      int     `json:"graphs_captured"`
}

// benchCUDA measures engines built with --target cuda on GPU ordinal dev:
// batch 1 and, if different, --batch sequences decoding together.
func benchCUDA(w, logw io.Writer, paths []string, dev int, o benchOptions) error {
	batches := []int{1}
	if o.batch != 1 {
		batches = append(batches, o.batch)
	}
	var rs []cudaBenchResult
	for _, path := range paths {
		e, err := engine.Open(path, engine.OpenOptions{})
		if err != nil {
			return fmt.Errorf("bench %s: %w", path, err)
		}
		for _, b := range batches {
			fmt.Fprintf(logw, "bench %s on cuda:%d, batch %d\n", path, dev, b)
			r, err := cuda.Bench(e, cuda.BenchOptions{Prompt: o.prompt, Decode: o.decode, Batch: b, Runs: o.runs, Device: dev})
			if err != nil {
				e.Close()
				return fmt.Errorf("bench %s: %w", path, err)
			}
			rs = append(rs, cudaBenchResult{Engine: path, Device: r.Device, Image: r.Image, Batch: b, TTFTMs: r.TTFTms, ITLMs: r.ITLms,
				DecodeTokS: r.TokPerS, WeightBytes: r.WeightBytes, CopyGBs: r.CopyGBs, RooflinePct: r.RooflinePct, Graphs: r.GraphsCaptured})
		}
		e.Close()
	}
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rs)
	}
	printCUDATable(w, rs, o)
	return nil
}

func printCUDATable(w io.Writer, rs []cudaBenchResult, o benchOptions) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "engine\tdevice\timage\tbatch\tTTFT ms\tITL ms\tdecode tok/s\tweights MB\tcopy GB/s\tof HBM roofline\t\n")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f\t%.3f\t%.0f\t%.0f\t%.0f\t%.1f%%\t\n",
			r.Engine, r.Device, r.Image, r.Batch, r.TTFTMs, r.ITLMs, r.DecodeTokS, float64(r.WeightBytes)/1e6, r.CopyGBs, r.RooflinePct)
	}
	tw.Flush()
	if len(rs) > 0 {
		images := map[string]bool{}
		for _, r := range rs {
			images[r.Image] = true
		}
		fmt.Fprintf(w, "prompt %d tokens (TTFT: median of %d prefills to logits), %d decode steps (ITL: mean, CUDA graphs), roofline = weight bytes per step ÷ ITL ÷ device copy bandwidth (read+write); images %v\n",
			o.prompt, o.runs, o.decode, slices.Sorted(maps.Keys(images)))
	}
}
