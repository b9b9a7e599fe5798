package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
)

// bench --json on the tiny golden model reports every measurement, and an
// engine compared with itself agrees exactly (top-1 1, KL 0) while an int8
// build of it does not quite.
func TestBenchJSON(t *testing.T) {
	bwElems = 1 << 16 // keep the bandwidth loops tiny in tests
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ref, q8 := filepath.Join(dir, "bf16.pio"), filepath.Join(dir, "int8.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: ref, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: q8, DType: ir.BF16, Quant: "int8"}); err != nil {
		t.Fatal(err)
	}
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &bytes.Buffer{}
	args, err := cliargs.Reorder(app, []string{"piort", "bench", ref, q8, "--json", "--prompt", "20", "--decode", "5", "--batch", "3", "--runs", "2", "--threads", "2", "--ref", ref})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Run(args); err != nil {
		t.Fatal(err)
	}
	var rs []benchResult
	if err := json.Unmarshal(out.Bytes(), &rs); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2", len(rs))
	}
	for _, r := range rs {
		if r.LoadMs <= 0 || r.PrefillTokS <= 0 || r.DecodeTokS <= 0 || r.BatchTokS <= 0 || r.TTFTMs <= 0 ||
			r.ITLP50Ms <= 0 || r.ITLP99Ms < r.ITLP50Ms || r.BytesPerToken <= 0 || r.ReadGBs <= 0 || r.RooflineFrac <= 0 || r.PeakRSSBytes <= 0 {
			t.Errorf("%s: missing measurement in %+v", r.Engine, r)
		}
	}
	if rs[0].Top1 != 1 || rs[0].MeanKL != 0 {
		t.Errorf("engine against itself: top-1 %v, KL %v; want 1, 0", rs[0].Top1, rs[0].MeanKL)
	}
	if rs[1].MeanKL <= 0 || rs[1].MeanKL > 0.01 || rs[1].Top1 < 0.8 {
		t.Errorf("int8 against bf16: top-1 %v, KL %v", rs[1].Top1, rs[1].MeanKL)
	}
	if rs[1].BytesPerToken >= rs[0].BytesPerToken {
		t.Errorf("int8 reads %d bytes per token, bf16 %d: want fewer", rs[1].BytesPerToken, rs[0].BytesPerToken)
	}
	for _, bad := range [][]string{{"piort", "bench"}, {"piort", "bench", ref, "--prompt", "0"}, {"piort", "bench", filepath.Join(dir, "missing.pio")}} {
		app := newApp()
		app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
		args, _ := cliargs.Reorder(app, bad)
		if err := app.Run(args); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	for _, c := range []struct{ p, want float64 }{{50, 3}, {0, 1}, {90, 5}, {99, 5}, {20, 1}, {40, 2}} {
		if got := percentile(v, c.p); got != c.want {
			t.Errorf("percentile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("percentile of nothing: want 0")
	}
}

// bench --device: a bad device string, CPU-only flags with cuda, and an
// engine without CUDA kernels each fail with a message saying why.
func TestBenchDevice(t *testing.T) {
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cpu.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: path, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"piort", "bench", path, "--device", "gpu0"}, "want cpu, cuda or cuda:N"},
		{[]string{"piort", "bench", path, "--device", "cuda", "--ref", path}, "--device cpu only"},
		{[]string{"piort", "bench", path, "--device", "cuda:0"}, "pioc build --target cuda"},
	} {
		app := newApp()
		app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
		args, err := cliargs.Reorder(app, c.args)
		if err != nil {
			t.Fatal(err)
		}
		err = app.Run(args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args[2:], err, c.want)
		}
	}
}

// The GPU table prints every measurement of every row.
func TestPrintCUDATable(t *testing.T) {
	var out bytes.Buffer
	printCUDATable(&out, []cudaBenchResult{{Engine: "e.pio", Device: "NVIDIA H100", Image: "sm_90a", Batch: 64, TTFTMs: 12.5, ITLMs: 3.25, DecodeTokS: 19692, WeightBytes: 8e9, CopyGBs: 3000, RooflinePct: 82.1, Graphs: 1}},
		benchOptions{prompt: 128, decode: 32, runs: 3, batch: 64})
	for _, want := range []string{"e.pio", "NVIDIA H100", "sm_90a", "64", "12.5", "3.250", "19692", "8000", "3000", "82.1%", "[sm_90a]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
