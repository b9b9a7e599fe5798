package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/pio"
)

// runText is `piort run` with a text prompt (-p) or, without one, an
// interactive chat on stdin.
func runText(ctx context.Context, c *cli.Context, e *pio.Engine, cfg runConfig, images [][]byte) error {
	w := c.App.Writer
	if cfg.raw {
		opt := cfg.gen
		opt.Images = images
		res, err := e.Generate(ctx, *cfg.prompt, opt, func(ch pio.Chunk) { io.WriteString(w, ch.Text) })
		fmt.Fprintln(w)
		return cutShort(e, cfg, res, err)
	}
	copt := pio.ChatOptions{GenerateOptions: cfg.gen}
	if cfg.noThink {
		f := false
		copt.EnableThinking = &f
	}
	var history []pio.Message
	if cfg.system != "" {
		history = append(history, pio.Message{Role: "system", Content: cfg.system})
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
		if err := cutShort(e, cfg, res.Result, err); err != nil {
			return err
		}
		history = append(history, res.Message)
		return nil
	}
	if cfg.prompt != nil {
		return turn(*cfg.prompt)
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
func readImages(paths []string) ([][]byte, error) {
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("--image: %w", err)
		}
		out = append(out, b)
	}
	return out, nil
}
