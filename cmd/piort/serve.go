package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/server"
)

// engineFlags size the engine for serve, run and load.
func engineFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "threads", Value: 0, Usage: "CPU threads (0 = all)"},
		&cli.IntFlag{Name: "max-step-tokens", Value: 256, Usage: "tokens per batched step (prefill chunks and decodes share it)"},
		&cli.IntFlag{Name: "max-seqs", Value: 16, Usage: "sequences per batched step"},
		&cli.IntFlag{Name: "cache-tokens", Value: 8192, Usage: "KV cache positions shared by all sequences"},
		&cli.IntFlag{Name: "block-size", Value: 16, Usage: "positions per KV cache block"},
		&cli.IntFlag{Name: "max-queue", Value: 256, Usage: "requests waiting beyond the running ones; more get 429"},
		&cli.BoolFlag{Name: "verify", Usage: "check weight checksums when loading"},
		&cli.IntFlag{Name: "max-image-tokens", Value: pio.DefaultMaxImageTokens, Usage: "vision-language engines: merged image tokens per request, all its images together"},
		deviceFlag(),
	}
}

func engineOptions(c *cli.Context) (pio.Options, error) {
	be, err := pioBackend(c.String("device"))
	return pio.Options{
		Threads: c.Int("threads"), MaxStepTokens: c.Int("max-step-tokens"), MaxSeqs: c.Int("max-seqs"),
		CacheTokens: c.Int("cache-tokens"), BlockSize: c.Int("block-size"), MaxQueue: c.Int("max-queue"),
		VerifyWeights: c.Bool("verify"), MaxImageTokens: c.Int("max-image-tokens"), Backend: be,
	}, err
}

func serveCmd() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve an engine over an OpenAI-compatible HTTP API",
		ArgsUsage: "ENGINE",
		Flags: append(engineFlags(),
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8000", Usage: "listen address (loopback unless told otherwise)"},
			&cli.StringFlag{Name: "api-key", EnvVars: []string{"PIO_API_KEY"}, Usage: "require \"Authorization: Bearer KEY\" on /v1"},
			&cli.StringFlag{Name: "model-name", Usage: "model id to serve (default: the engine's name)"},
			&cli.Int64Flag{Name: "max-body-bytes", Value: 20 << 20, Usage: "largest request body (images come base64 inside it)"},
			&cli.DurationFlag{Name: "drain-timeout", Value: 60 * time.Second, Usage: "on SIGTERM, how long in-flight requests may finish"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("serve: want one ENGINE argument")
			}
			opt, err := engineOptions(c)
			if err != nil {
				return err
			}
			e, err := pio.Load(c.Args().First(), opt)
			if err != nil {
				return err
			}
			defer e.Close()
			ln, err := net.Listen("tcp", c.String("addr"))
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return serve(ctx, ln, e, server.Config{
				ModelName: c.String("model-name"), APIKey: c.String("api-key"), MaxBodyBytes: c.Int64("max-body-bytes"),
			}, c.Duration("drain-timeout"))
		},
	}
}

// serve runs the API on ln until ctx ends, then drains: new requests get
// 503, requests in flight run to the end (up to drain), and it returns.
func serve(ctx context.Context, ln net.Listener, e *pio.Engine, cfg server.Config, drain time.Duration) error {
	s := server.New(e, cfg)
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	slog.Info("serving", "model", e.Name(), "addr", "http://"+ln.Addr().String(), "auth", cfg.APIKey != "")
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	slog.Info("draining", "timeout", drain)
	s.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	slog.Info("stopped")
	return err
}
