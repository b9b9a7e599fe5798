package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
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
