package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/pio"
)

// runText is `piort run` with a text prompt (-p) or, without one, an
// interactive chat on stdin.
func runText(c *cli.Context) error {
	if c.Int("max-tokens") < 0 {
		return fmt.Errorf("run: --max-tokens must be >= 0")
	}
	be, err := pioBackend(c.String("device"))
	if err != nil {
		return err
	}
	e, err := pio.Load(c.Args().First(), pio.Options{
		Threads: c.Int("threads"), MaxStepTokens: c.Int("max-step-tokens"), MaxSeqs: 1, VerifyWeights: c.Bool("verify"), Backend: be,
	})
	if err != nil {
		return err
	}
	defer e.Close()
	var opt pio.GenerateOptions
	if c.IsSet("max-tokens") {
		opt.MaxTokens = c.Int("max-tokens")
	}
	if c.IsSet("temperature") {
		v := c.Float64("temperature")
		opt.Temperature = &v
	}
	if c.IsSet("top-p") {
		v := c.Float64("top-p")
		opt.TopP = &v
	}
	if c.IsSet("top-k") {
		v := c.Int("top-k")
		opt.TopK = &v
	}
	if c.IsSet("seed") {
		v := c.Uint64("seed")
		opt.Seed = &v
	}
	images, err := readImages(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	w := c.App.Writer
	if c.Bool("raw") {
		if !c.IsSet("prompt") {
			return fmt.Errorf("run: --raw needs --prompt")
		}
		opt.Images = images
		_, err := e.Generate(ctx, c.String("prompt"), opt, func(ch pio.Chunk) { io.WriteString(w, ch.Text) })
		fmt.Fprintln(w)
		return err
	}
	copt := pio.ChatOptions{GenerateOptions: opt}
	if c.Bool("no-think") {
		f := false
		copt.EnableThinking = &f
	}
	var history []pio.Message
	if s := c.String("system"); s != "" {
		history = append(history, pio.Message{Role: "system", Content: s})
	}
	turn := func(user string) error {
		msg := pio.Message{Role: "user", Content: user}
		if len(images) > 0 { // the first turn carries the images, before its text
			for _, img := range images {
				msg.Parts = append(msg.Parts, pio.Part{Type: "image", Image: img})
			}
			msg.Parts = append(msg.Parts, pio.Part{Type: "text", Text: user})
			images = nil
		}
		history = append(history, msg)
		thinking := false
		res, err := e.Chat(ctx, history, copt, func(ch pio.ChatChunk) {
			if ch.Reasoning != "" {
				if !thinking {
					io.WriteString(w, "<think>\n")
					thinking = true
				}
				io.WriteString(w, ch.Reasoning)
			}
			if ch.Content != "" || len(ch.ToolCalls) > 0 {
				if thinking {
					io.WriteString(w, "\n</think>\n\n")
					thinking = false
				}
				io.WriteString(w, ch.Content)
				for _, tc := range ch.ToolCalls {
					fmt.Fprintf(w, "\n[tool call] %s(%s)", tc.Name, tc.Arguments)
				}
			}
		})
		if thinking {
			io.WriteString(w, "\n</think>")
		}
		fmt.Fprintln(w)
		if err != nil {
			return err
		}
		history = append(history, res.Message)
		return nil
	}
	if c.IsSet("prompt") {
		return turn(c.String("prompt"))
	}
	// Interactive: one line per user turn; an empty line or EOF ends.
	in := bufio.NewScanner(c.App.Reader)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for {
		fmt.Fprint(w, ">>> ")
		if !in.Scan() {
			fmt.Fprintln(w)
			return in.Err()
		}
		line := strings.TrimSpace(in.Text())
		if line == "" || line == "/bye" {
			return nil
		}
		if err := turn(line); err != nil {
			return err
		}
	}
}

// readImages reads the --image files.
func readImages(c *cli.Context) ([][]byte, error) {
	var out [][]byte
	for _, p := range c.StringSlice("image") {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("run: --image: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}

// runIDsWithImages is `piort run --prompt-ids ... --image ...`: the token
// ids go through the engine's vision stage and scheduler, and the
// generated ids are printed.
func runIDsWithImages(c *cli.Context, prompt []int32) error {
	if c.Int("max-tokens") < 0 {
		return fmt.Errorf("run: --max-tokens must be >= 0")
	}
	images, err := readImages(c)
	if err != nil {
		return err
	}
	be, err := pioBackend(c.String("device"))
	if err != nil {
		return err
	}
	e, err := pio.Load(c.Args().First(), pio.Options{
		Threads: c.Int("threads"), MaxStepTokens: c.Int("max-step-tokens"), MaxSeqs: 1, VerifyWeights: c.Bool("verify"), Backend: be,
	})
	if err != nil {
		return err
	}
	defer e.Close()
	temp := c.Float64("temperature")
	seed := c.Uint64("seed")
	opt := pio.GenerateOptions{MaxTokens: c.Int("max-tokens"), Temperature: &temp, Seed: &seed, Images: images, IgnoreEOS: true}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	w := c.App.Writer
	_, err = e.GenerateIDs(ctx, prompt, opt, func(ch pio.Chunk) {
		for _, t := range ch.Tokens {
			fmt.Fprintf(w, "%d ", t)
		}
	})
	fmt.Fprintln(w)
	return err
}
