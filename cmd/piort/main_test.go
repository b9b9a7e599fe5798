package main

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
)

func TestRunStreamsGoldenGreedy(t *testing.T) {
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	eng := filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: eng, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	p := g.Prompts[1]
	var ids []string
	for _, id := range p.IDs {
		ids = append(ids, itoa(id))
	}
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	args, err := cliargs.Reorder(app, []string{"piort", "run", eng, "--prompt-ids", strings.Join(ids, ","), "--max-tokens", "16", "--max-step-tokens", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Run(args); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, id := range p.Greedy {
		want = append(want, itoa(id))
	}
	if got := strings.TrimSpace(out.String()); got != strings.Join(want, " ") {
		t.Errorf("got  %s\nwant %s", got, strings.Join(want, " "))
	}
	for _, bad := range [][]string{
		{"piort", "run", eng, "--prompt-ids", "1,x"},
		{"piort", "run", eng, "--prompt-ids", "100000"},
		{"piort", "run", filepath.Join(t.TempDir(), "missing.pio"), "--prompt-ids", "1"},
	} {
		app := newApp()
		app.Writer = &bytes.Buffer{}
		args, _ := cliargs.Reorder(app, bad)
		if err := app.Run(args); err == nil {
			t.Errorf("%v: want an error", bad)
		}
	}
}

func itoa(v int32) string { return strconv.Itoa(int(v)) }
