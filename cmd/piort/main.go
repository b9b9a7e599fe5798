// Command piort runs Inference-PIO engines.
//
//	piort run engine.pio -p "text" [--raw] [--max-tokens N] [--temperature T] [--seed S]
//	piort run engine.pio                 # interactive chat
//	piort run engine.pio --prompt-ids 1,2,3
//	piort run vl.pio --image cat.png -p "Describe the image"
//	piort serve engine.pio [--addr 127.0.0.1:8000] [--api-key KEY]
//	piort load --url http://127.0.0.1:8000 --concurrency 64 --duration 30s
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/sample"
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
	return &cli.Command{
		Name:      "run",
		Usage:     "generate from one prompt, streaming tokens as they come",
		ArgsUsage: "ENGINE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "prompt", Aliases: []string{"p"}, Usage: "prompt text, sent through the chat template (see --raw); none: interactive chat"},
			&cli.BoolFlag{Name: "raw", Usage: "complete the prompt as plain text, without the chat template"},
			&cli.StringFlag{Name: "system", Usage: "system message for chat"},
			&cli.BoolFlag{Name: "no-think", Usage: "chat: ask the template to disable thinking (enable_thinking=false)"},
			&cli.Float64Flag{Name: "top-p", Usage: "nucleus sampling (default: the model's generation_config)"},
			&cli.IntFlag{Name: "top-k", Usage: "top-k sampling (default: the model's generation_config)"},
			&cli.StringFlag{Name: "prompt-ids", Usage: "prompt as comma-separated token ids (prints token ids)"},
			&cli.StringSliceFlag{Name: "image", Usage: "image file (PNG, JPEG, WebP) for a vision-language engine, repeatable: chat puts the images before the prompt's text; with --raw or --prompt-ids the k-th <|image_pad|> of the prompt stands for the k-th image"},
			&cli.IntFlag{Name: "max-tokens", Value: 32, Usage: "tokens to generate"},
			&cli.Float64Flag{Name: "temperature", Value: 0, Usage: "0 = greedy"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "sampling seed (same seed, same output)"},
			&cli.IntFlag{Name: "threads", Value: 0, Usage: "CPU threads (0 = all)"},
			&cli.IntFlag{Name: "max-step-tokens", Value: 256, Usage: "largest prefill chunk per step"},
			&cli.BoolFlag{Name: "verify", Usage: "check weight checksums when loading"},
			deviceFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("run: want one ENGINE argument")
			}
			if !c.IsSet("prompt-ids") {
				return runText(c)
			}
			prompt, err := parseIDs(c.String("prompt-ids"))
			if err != nil {
				return err
			}
			if len(c.StringSlice("image")) > 0 {
				return runIDsWithImages(c, prompt)
			}
			if c.Int("max-tokens") < 0 {
				return fmt.Errorf("run: --max-tokens must be >= 0")
			}
			start := time.Now()
			e, err := engine.Open(c.Args().First(), engine.OpenOptions{VerifyWeights: c.Bool("verify")})
			if err != nil {
				return err
			}
			defer e.Close()
			maxStep := c.Int("max-step-tokens")
			if maxStep <= 0 {
				return fmt.Errorf("run: --max-step-tokens must be > 0")
			}
			const blockSize = 16
			numBlocks := (len(prompt)+c.Int("max-tokens"))/blockSize + 2
			be, err := newBackend(c.String("device"), e, backendSize{maxTokens: maxStep, blockSize: blockSize, numBlocks: numBlocks, maxSeqs: 1, threads: c.Int("threads")})
			if err != nil {
				return err
			}
			defer be.Close()
			loaded := time.Since(start)
			gen := runtime.NewGenerator(be, kvcache.NewAllocator(numBlocks, blockSize), maxStep)
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			w := c.App.Writer
			first := time.Time{}
			t0 := time.Now()
			out, err := gen.Generate(ctx, prompt, runtime.GenerateOptions{
				MaxTokens: c.Int("max-tokens"),
				Sample:    sample.Options{Temperature: c.Float64("temperature"), Seed: c.Uint64("seed")},
			}, func(tok int32) error {
				if first.IsZero() {
					first = time.Now()
				}
				_, err := fmt.Fprintf(w, "%d ", tok)
				return err
			})
			fmt.Fprintln(w)
			if err != nil {
				return err
			}
			if n := len(out); n > 0 {
				dec := time.Since(first).Seconds()
				rate := 0.0
				if n > 1 && dec > 0 {
					rate = float64(n-1) / dec
				}
				fmt.Fprintf(os.Stderr, "load %.0f ms, prompt %d tokens, first token %.0f ms, %d tokens, %.1f tok/s decode\n",
					loaded.Seconds()*1000, len(prompt), first.Sub(t0).Seconds()*1000, n, rate)
			}
			return nil
		},
	}
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
