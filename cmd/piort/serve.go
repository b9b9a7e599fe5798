package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
			return serve(ctx, ln, e, cfg.server, sampleParams(cfg.defaults), cfg.drain)
		},
	}
}

// serveConfig is what `piort serve`'s flags say.
type serveConfig struct {
	engine   engineConfig
	server   server.Config
	addr     string
	drain    time.Duration
	defaults pio.GenerateOptions // sampling of requests that leave a parameter out
}

// parseServe reads `piort serve`'s flags.
func parseServe(c *cli.Context) (serveConfig, error) {
	var cfg serveConfig
	if c.NArg() != 1 {
		return cfg, fmt.Errorf("want one ENGINE argument")
	}
	var err error
	if cfg.engine, cfg.defaults, err = sharedOptions(c); err != nil {
		return cfg, err
	}
	cfg.server = server.Config{ModelName: c.String("model-name"), APIKey: c.String("api-key"), MaxBodyBytes: c.Int64("max-body-bytes")}
	if cfg.server.MaxBodyBytes < 1 {
		return cfg, fmt.Errorf("--max-body-bytes must be >= 1, got %d", cfg.server.MaxBodyBytes)
	}
	if cfg.drain = c.Duration("drain-timeout"); cfg.drain < 0 {
		return cfg, fmt.Errorf("--drain-timeout must be >= 0, got %v", cfg.drain)
	}
	cfg.addr = c.String("addr")
	return cfg, nil
}

// serve runs the API on ln until ctx ends, then drains: new requests get
// 503, requests in flight run to the end (up to drain), and it returns.
// defaults are the sampling parameters (OpenAI names) of completion
// requests that leave them out.
func serve(ctx context.Context, ln net.Listener, e *pio.Engine, cfg server.Config, defaults map[string]any, drain time.Duration) error {
	s := server.New(e, cfg)
	hs := &http.Server{
		Handler:           withDefaults(s.Handler(), defaults, cfg.MaxBodyBytes),
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

// withDefaults adds the parameters of defaults that a completion
// request's JSON body leaves out. A body that is not a JSON object, or
// one over maxBody bytes (0: server.Config's default, 4 MiB), goes through
// untouched for the server to refuse.
func withDefaults(h http.Handler, defaults map[string]any, maxBody int64) http.Handler {
	if len(defaults) == 0 {
		return h
	}
	if maxBody <= 0 {
		maxBody = 4 << 20
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || (r.URL.Path != "/v1/completions" && r.URL.Path != "/v1/chat/completions") {
			h.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		var req map[string]json.RawMessage
		if err == nil && int64(len(body)) <= maxBody && json.Unmarshal(body, &req) == nil && req != nil {
			for k, v := range defaults {
				if _, ok := req[k]; !ok {
					req[k], _ = json.Marshal(v)
				}
			}
			body, _ = json.Marshal(req)
			r.ContentLength = int64(len(body))
			r.Body = io.NopCloser(bytes.NewReader(body))
		} else {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		}
		h.ServeHTTP(w, r)
	})
}
