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
	"github.com/inference-pio/pio/server"
)

func serveCmd() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8000", Usage: "listen address (loopback unless told otherwise)"},
		&cli.StringFlag{Name: "api-key", EnvVars: []string{"PIO_API_KEY"}, Usage: "require \"Authorization: Bearer KEY\" on /v1"},
		&cli.StringFlag{Name: "model-name", Usage: "model id to serve (default: the engine's name)"},
		&cli.Int64Flag{Name: "max-body-bytes", Value: 20 << 20, Usage: "largest request body (images come base64 inside it)"},
		&cli.DurationFlag{Name: "drain-timeout", Value: 60 * time.Second, Usage: "on SIGTERM, how long in-flight requests may finish"},
	}
	flags = append(flags, engineFlags(true)...)
	return &cli.Command{
		Name:        "serve",
		Usage:       "serve an engine over an OpenAI-compatible HTTP API",
		ArgsUsage:   "ENGINE",
		Description: "The sampling flags are the defaults of requests that leave that parameter out.",
		Flags:       append(flags, sampleFlags()...),
		Action: func(c *cli.Context) error {
			cfg, err := parseServe(c)
			if err != nil {
				return fmt.Errorf("serve: %w", err)
			}
			e, err := cfg.engine.load(c.Args().First())
			if err != nil {
				return err
			}
			defer e.Close()
			ln, err := net.Listen("tcp", cfg.addr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return serve(ctx, ln, e, cfg.server, cfg.drain)
		},
	}
}

// serveConfig is what `piort serve`'s flags say; the sampling flags are
// server.Defaults.
type serveConfig struct {
	engine engineConfig
	server server.Config
	addr   string
	drain  time.Duration
}

// parseServe reads `piort serve`'s flags.
func parseServe(c *cli.Context) (serveConfig, error) {
	var cfg serveConfig
	if c.NArg() != 1 {
		return cfg, fmt.Errorf("want one ENGINE argument")
	}
	var err error
	var sampling pio.GenerateOptions
	if cfg.engine, sampling, err = sharedOptions(c); err != nil {
		return cfg, err
	}
	cfg.server = server.Config{ModelName: c.String("model-name"), APIKey: c.String("api-key"), MaxBodyBytes: c.Int64("max-body-bytes"),
		Defaults: serverDefaults(sampling)}
	if cfg.server.MaxBodyBytes < 1 {
		return cfg, fmt.Errorf("--max-body-bytes must be >= 1, got %d", cfg.server.MaxBodyBytes)
	}
	if cfg.drain = c.Duration("drain-timeout"); cfg.drain < 0 {
		return cfg, fmt.Errorf("--drain-timeout must be >= 0, got %v", cfg.drain)
	}
	cfg.addr = c.String("addr")
	return cfg, nil
}

// serverDefaults are the sampling flags' values (sampleOptions) as the
// server's defaults for requests that leave a parameter out.
func serverDefaults(o pio.GenerateOptions) server.Defaults {
	d := server.Defaults{Temperature: o.Temperature, TopP: o.TopP, TopK: o.TopK, MinP: o.MinP, RepetitionPenalty: o.RepetitionPenalty, Seed: o.Seed}
	if o.PresencePenalty != 0 {
		d.PresencePenalty = &o.PresencePenalty
	}
	if o.FrequencyPenalty != 0 {
		d.FrequencyPenalty = &o.FrequencyPenalty
	}
	return d
}

// serve runs the API over e (a *pio.Engine) on ln until ctx ends, then
// drains: new requests get 503, requests in flight run to the end (up to
// drain), and it returns.
func serve(ctx context.Context, ln net.Listener, e server.Engine, cfg server.Config, drain time.Duration) error {
	s, err := server.New(e, cfg)
	if err != nil {
		return err
	}
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
	err = hs.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	slog.Info("stopped")
	return err
}
