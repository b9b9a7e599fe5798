// Command piort runs Inference-PIO engines.
//
//	piort run engine.pio -p "text" [--raw] [--max-tokens N] [--temperature T] [--top-p P] [--seed S] ...
//	piort run engine.pio                 # interactive chat
//	piort run engine.pio --prompt-ids 1,2,3 [--cache-tokens N]
//	piort run vl.pio --image cat.png -p "Describe the image"
//	piort serve engine.pio [--addr 127.0.0.1:8000] [--api-key KEY] [--cache-tokens N] [--temperature T] ...
//	piort load --url http://127.0.0.1:8000 --concurrency 64 --duration 30s
//	piort bench engine.pio [--ref bf16.pio] [--threads N] [--block-size B]
//
// run, serve and load share the engine flags (threads, step size, KV
// cache, device: engineFlags) and the sampling flags (sampleFlags); bench
// takes the engine flags that size its CPU measurements.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/pio"
)

func main() { cliargs.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:     "piort",
		Usage:    "run Inference-PIO engines",
		Commands: []*cli.Command{runCmd(), benchCmd(), serveCmd(), loadCmd()},
	}
}

func runCmd() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt text, sent through the chat template (see --raw); none: interactive chat"},
		&cli.BoolFlag{Name: "raw", Usage: "complete --prompt as plain text, without the chat template"},
		&cli.StringFlag{Name: "system", Usage: "system message for chat"},
		&cli.BoolFlag{Name: "no-think", Usage: "chat: ask the template to disable thinking (enable_thinking=false)"},
		&cli.StringFlag{Name: "prompt-ids", Usage: "prompt as comma-separated token ids (prints token ids; does not stop at EOS)"},
		&cli.StringSliceFlag{Name: "image", Usage: "image file (PNG, JPEG, WebP) for a vision-language engine, repeatable: chat puts the images before the prompt's text; with --raw or --prompt-ids the k-th <|image_pad|> of the prompt stands for the k-th image"},
		&cli.IntFlag{Name: "max-tokens", DefaultText: "until the answer ends; --prompt-ids: 32", Usage: "most tokens to generate, 0 = until the context is full"},
	}
	flags = append(flags, sampleFlags()...)
	return &cli.Command{
		Name:      "run",
		Usage:     "generate from one prompt, streaming tokens as they come",
		ArgsUsage: "ENGINE",
		Description: "With --prompt-ids, decoding is greedy unless --temperature is given. A generation the context cuts short\n" +
			"(--cache-tokens, or the model's max_position_embeddings) is an error.",
		Flags: append(flags, engineFlags(false)...),
		Action: func(c *cli.Context) error {
			cfg, err := parseRun(c)
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			images, err := readImages(cfg.images)
			if err != nil {
				return fmt.Errorf("run: %w", err)
			}
			start := time.Now()
			e, err := cfg.engine.load(c.Args().First())
			if err != nil {
				return err
			}
			defer e.Close()
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			if cfg.promptIDs != nil {
				cfg.gen.Images = images
				return runIDs(ctx, c, e, cfg, time.Since(start))
			}
			return runText(ctx, c, e, cfg, images)
		},
	}
}

// runConfig is what `piort run`'s flags say.
type runConfig struct {
	engine       engineConfig
	gen          pio.GenerateOptions // sampling and MaxTokens; Images are read at run time
	prompt       *string             // --prompt; nil without one
	promptIDs    []int32             // --prompt-ids; nil without
	raw, noThink bool
	system       string
	images       []string // --image files
}

// parseRun reads `piort run`'s flags and refuses combinations in which a
// flag would be ignored.
func parseRun(c *cli.Context) (runConfig, error) {
	var cfg runConfig
	if c.NArg() != 1 {
		return cfg, fmt.Errorf("want one ENGINE argument")
	}
	var err error
	if cfg.engine, cfg.gen, err = sharedOptions(c); err != nil {
		return cfg, err
	}
	cfg.engine.opt.MaxSeqs = 1
	if c.IsSet("max-tokens") {
		if cfg.gen.MaxTokens = c.Int("max-tokens"); cfg.gen.MaxTokens < 0 {
			return cfg, fmt.Errorf("--max-tokens must be >= 0, got %d", cfg.gen.MaxTokens)
		}
	}
	if c.IsSet("prompt") {
		p := c.String("prompt")
		cfg.prompt = &p
	}
	cfg.raw, cfg.noThink, cfg.system, cfg.images = c.Bool("raw"), c.Bool("no-think"), c.String("system"), c.StringSlice("image")
	greedy := "--temperature 0"
	switch {
	case c.IsSet("prompt-ids"):
		if cfg.promptIDs, err = parseIDs(c.String("prompt-ids")); err != nil {
			return cfg, err
		}
		for _, n := range []string{"prompt", "raw", "system", "no-think"} {
			if c.IsSet(n) {
				return cfg, fmt.Errorf("--%s applies to text prompts, not --prompt-ids", n)
			}
		}
		if cfg.gen.Temperature == nil {
			zero := 0.0
			cfg.gen.Temperature = &zero
			greedy = "--prompt-ids decodes greedily unless --temperature is given"
		}
		if !c.IsSet("max-tokens") {
			cfg.gen.MaxTokens = 32
		}
		cfg.gen.IgnoreEOS = true
	case cfg.raw:
		if cfg.prompt == nil {
			return cfg, fmt.Errorf("--raw needs --prompt")
		}
		for _, n := range []string{"system", "no-think"} {
			if c.IsSet(n) {
				return cfg, fmt.Errorf("--%s applies to chat, not --raw", n)
			}
		}
	}
	return cfg, checkGreedy(cfg.gen, greedy)
}

// runIDs is `piort run --prompt-ids`: it prints the generated token ids,
// then the timings on stderr.
func runIDs(ctx context.Context, c *cli.Context, e *pio.Engine, cfg runConfig, loaded time.Duration) error {
	w := c.App.Writer
	var first time.Time
	t0 := time.Now()
	res, err := e.GenerateIDs(ctx, cfg.promptIDs, cfg.gen, func(ch pio.Chunk) {
		if first.IsZero() && len(ch.Tokens) > 0 {
			first = time.Now()
		}
		for _, t := range ch.Tokens {
			fmt.Fprintf(w, "%d ", t)
		}
	})
	fmt.Fprintln(w)
	if err := cutShort(e, cfg, res, err); err != nil {
		return err
	}
	if n := res.CompletionTokens; n > 0 {
		dec := time.Since(first).Seconds()
		rate := 0.0
		if n > 1 && dec > 0 {
			rate = float64(n-1) / dec
		}
		fmt.Fprintf(errWriter(c), "load %.0f ms, prompt %d tokens, first token %.0f ms, %d tokens, %.1f tok/s decode\n",
			loaded.Seconds()*1000, res.PromptTokens, first.Sub(t0).Seconds()*1000, n, rate)
	}
	return nil
}

// cutShort turns a generation the context cut short into an error that
// says what bounds the context: pio refusing the prompt as too long, or
// fewer tokens than --max-tokens because the context filled.
func cutShort(e *pio.Engine, cfg runConfig, res pio.Result, err error) error {
	if err != nil {
		if errors.Is(err, pio.ErrTooLong) {
			return fmt.Errorf("run: %w (%s)", err, cfg.engine.contextHint(e))
		}
		return err
	}
	if want := cfg.gen.MaxTokens; want > 0 && res.CompletionTokens < want && res.FinishReason == "length" {
		return fmt.Errorf("run: stopped after %d of --max-tokens %d: the context holds %d positions (%s)",
			res.CompletionTokens, want, e.MaxModelLen(), cfg.engine.contextHint(e))
	}
	return nil
}

func errWriter(c *cli.Context) io.Writer {
	if c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--prompt-ids: %q is not a token id", f)
		}
		ids = append(ids, int32(v))
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("--prompt-ids: empty prompt")
	}
	return ids, nil
}
