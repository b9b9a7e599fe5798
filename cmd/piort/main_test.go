package main

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
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

// TestRunImage: `piort run VL.pio --image a --image b` with the golden
// prompt, as token ids and as chat text, prints transformers' greedy
// continuation.
func TestRunImage(t *testing.T) {
	const dir = "../../testdata/tiny/qwen3vl"
	eng := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: dir, Output: eng, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	f, err := hf.OpenSafetensors(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	i64 := func(name string) []int32 {
		x, _ := f.Tensor(name)
		out := make([]int32, len(x.Data)/8)
		for i := range out {
			out[i] = int32(int64(binary.LittleEndian.Uint64(x.Data[8*i:])))
		}
		return out
	}
	var ids, want, wantText []string
	in := i64("input_ids")
	var text strings.Builder
	for i, id := range in {
		if id == 250 && in[i-1] == 250 {
			continue
		}
		ids = append(ids, itoa(id))
	}
	for _, id := range i64("greedy") {
		want = append(want, itoa(id))
		wantText = append(wantText, "<t"+itoa(id)+">")
	}
	imgs := []string{"--image", "../../testdata/images/a.png", "--image", "../../testdata/images/b.png"}
	run := func(args ...string) string {
		app := newApp()
		var out bytes.Buffer
		app.Writer = &out
		a, err := cliargs.Reorder(app, append([]string{"piort", "run", eng}, append(args, imgs...)...))
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Run(a); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}
	if got := run("--prompt-ids", strings.Join(ids, ","), "--max-tokens", "8", "--max-step-tokens", "5"); got != strings.Join(want, " ") {
		t.Errorf("--prompt-ids: got %s\nwant %s", got, strings.Join(want, " "))
	}
	// --raw with the prompt as text: the tiny tokenizer's <tK> tokens and Qwen's vision markup.
	for i, id := range in {
		switch {
		case id == 250 && in[i-1] == 250:
		case id == 248:
			text.WriteString("<|vision_start|>")
		case id == 249:
			text.WriteString("<|vision_end|>")
		case id == 250:
			text.WriteString("<|image_pad|>")
		default:
			text.WriteString("<t" + itoa(id) + ">")
		}
	}
	if got := run("--raw", "-p", text.String(), "--max-tokens", "8", "--temperature", "0"); got != strings.Join(wantText, "") {
		t.Errorf("--raw: got %s\nwant %s", got, strings.Join(wantText, ""))
	}
}

// TestRunSamplingEveryPath: on each path of `piort run` (token ids, raw
// text, one chat turn, interactive chat) every sampling flag reaches the
// sampler. With the same seed a draw repeats; each truncation narrowed to
// the best token (top-k 1, a tiny top-p, min-p 1) turns a draw that
// differs from greedy into greedy; each penalty changes greedy output
// that repeats tokens.
func TestRunSamplingEveryPath(t *testing.T) {
	eng := tinyEngine(t)
	for _, path := range []struct {
		name  string
		args  []string
		stdin string
	}{
		{"prompt-ids", []string{"--prompt-ids", "118,493,111,283,430,436,51"}, ""},
		{"raw", []string{"--raw", "-p", "Hello"}, ""},
		{"chat", []string{"-p", "Hello"}, ""},
		{"interactive", nil, "Hello\n"},
	} {
		run := func(args ...string) string {
			t.Helper()
			app := newApp()
			var out bytes.Buffer
			app.Writer, app.ErrWriter, app.Reader = &out, &bytes.Buffer{}, strings.NewReader(path.stdin)
			a, err := cliargs.Reorder(app, append(append([]string{"piort", "run", eng, "--max-tokens", "16"}, path.args...), args...))
			if err != nil {
				t.Fatal(err)
			}
			if err := app.Run(a); err != nil {
				t.Fatalf("%s %v: %v", path.name, args, err)
			}
			return out.String()
		}
		greedy := run("--temperature", "0")
		draw := []string{"--temperature", "1.5", "--seed", "1"}
		sampled := run(draw...)
		if sampled == greedy {
			t.Fatalf("%s: --temperature 1.5 gave the greedy output %q", path.name, greedy)
		}
		if again := run(draw...); again != sampled {
			t.Errorf("%s: --seed 1 twice: %q, then %q", path.name, sampled, again)
		}
		for _, narrow := range [][]string{{"--top-k", "1"}, {"--top-p", "0.0001"}, {"--min-p", "1"}} {
			if got := run(append(narrow, draw...)...); got != greedy {
				t.Errorf("%s %v: %q, want the greedy %q", path.name, narrow, got, greedy)
			}
		}
		for _, pen := range []string{"--repetition-penalty", "--presence-penalty", "--frequency-penalty"} {
			if got := run("--temperature", "0", pen, "2"); got == greedy {
				t.Errorf("%s %s 2: the output did not change: %q", path.name, pen, got)
			}
		}
	}
}

// The cache flags reach the engine: a context too small for the prompt
// and --max-tokens is an error naming --cache-tokens, on the token-id and
// the text paths, and a vision-only flag on a text engine is refused.
func TestRunCacheFlags(t *testing.T) {
	eng := tinyEngine(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--prompt-ids", "118,493,111,283,430,436,51", "--cache-tokens", "16", "--block-size", "4"}, "stopped after 9 of --max-tokens 16: the context holds 16 positions (raise --cache-tokens)"},
		{[]string{"--prompt-ids", "118,493,111,283,430,436,51", "--cache-tokens", "4", "--block-size", "4"}, "the model holds 4 (raise --cache-tokens)"},
		{[]string{"--raw", "-p", "Hello", "--temperature", "0", "--cache-tokens", "8", "--block-size", "4"}, "the context holds 8 positions (raise --cache-tokens)"},
		{[]string{"-p", "Hello", "--temperature", "0", "--cache-tokens", "8", "--block-size", "4"}, "(raise --cache-tokens)"},
		{[]string{"--prompt-ids", "1", "--max-image-tokens", "64"}, "not a vision-language engine"},
	} {
		app := newApp()
		app.Writer, app.ErrWriter = &bytes.Buffer{}, &bytes.Buffer{}
		a, err := cliargs.Reorder(app, append([]string{"piort", "run", eng, "--max-tokens", "16"}, c.args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Run(a); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &bytes.Buffer{}
	a, _ := cliargs.Reorder(app, []string{"piort", "run", eng, "--prompt-ids", "118,493,111,283,430,436,51", "--max-tokens", "16", "--cache-tokens", "23", "--block-size", "4"})
	if err := app.Run(a); err != nil || len(strings.Fields(out.String())) != 16 {
		t.Errorf("a 24-position cache for 7 + 16 tokens: %q, %v", out.String(), err)
	}
}
