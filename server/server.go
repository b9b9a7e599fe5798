// Package server is `piort serve`: an OpenAI-compatible HTTP API over a
// pio.Engine — /v1/chat/completions and /v1/completions (streamed as
// server-sent events or not), /v1/models, /health and Prometheus /metrics.
//
// It validates requests into pio options (bad input is a 400 in OpenAI's
// error JSON), enforces Bearer auth and body limits, answers 429 when the
// engine's queue is full, and cancels a request — freeing its KV blocks —
// when its client disconnects. Batching, sampling and parsing live in the
// packages below it; this one only speaks HTTP.
//
// Every OpenAI request field is honoured or refused: a field, or a value
// of one, that the server cannot honour (tool_choice allowed_tools, audio,
// ...) is a 400 naming it, never silently dropped; fields that are not OpenAI's are accepted and named once in the
// log (fields.go). Config.Defaults give the sampling parameters a request
// leaves out (`piort serve`'s sampling flags; defaults.go). n choices (and
// completions' best_of) run as sequences of their own that share the
// prompt's cached blocks (choices.go). response_format json_object and
// json_schema are enforced token by token (pio.GenerateOptions.Grammar;
// structured.go), and so are tool_choice "required" and a named function,
// in the model's own tool-call format (pio.ChatOptions.ToolChoice; api.go).
// Logprobs give each token's raw bytes (pio.Engine.TokenBytes) and
// OpenAI's names and character offsets for tokens that hold part of a
// character (tokens.go).
package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime/scheduler"
	"github.com/inference-pio/pio/runtime/toolcall"
)

// Config configures a Server.
type Config struct {
	// ModelName is the id /v1/models lists and requests may name; default
	// the engine's name. Requests naming another model get a 404.
	ModelName string
	// APIKey, when set, is required as "Authorization: Bearer KEY" on /v1.
	APIKey string
	// MaxBodyBytes limits a request body; default 4 MiB.
	MaxBodyBytes int64
	// Log receives a line per generation failing on the server's side and one per request
	// field name that is neither OpenAI's nor implemented (the first time
	// a request sends it, for the first 256 such names; Server.noteIgnored);
	// default slog.Default().
	Log *slog.Logger
	// Defaults are the sampling parameters of requests that leave them
	// out (`piort serve --temperature ...`); the zero value sets none.
	Defaults Defaults
}

// Engine is what the server needs of a *pio.Engine.
type Engine interface {
	Name() string
	MaxModelLen() int
	Stats() scheduler.Stats
	Encode(text string) ([]int32, error)
	GenerateIDs(ctx context.Context, prompt []int32, opt pio.GenerateOptions, fn func(pio.Chunk)) (pio.Result, error)
	Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error)
}

// Server serves one engine. Create with New; Handler is its http.Handler.
type Server struct {
	eng      Engine
	cfg      Config
	metrics  *metrics
	draining atomic.Bool
	created  int64

	ignoredMu   sync.Mutex
	ignored     map[string]bool // extra field names logged by noteIgnored
	ignoredFull bool            // ignored holds maxRememberedFields names
}

// New returns a server for e (a *pio.Engine), or an error naming a
// default of cfg.Defaults that is out of range.
func New(e Engine, cfg Config) (*Server, error) {
	if err := cfg.Defaults.check(); err != nil {
		return nil, err
	}
	if cfg.ModelName == "" {
		cfg.ModelName = e.Name()
	}
	if cfg.ModelName == "" {
		cfg.ModelName = "pio"
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 4 << 20
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Server{eng: e, cfg: cfg, metrics: newMetrics(), created: time.Now().Unix()}, nil
}

// Drain makes /health report 503 and new generation requests fail with
// 503, for a graceful shutdown (http.Server.Shutdown then waits for the
// requests in flight).
func (s *Server) Drain() { s.draining.Store(true) }

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.writeMetrics(w)
	})
	mux.HandleFunc("GET /v1/models", s.auth(s.models))
	mux.HandleFunc("POST /v1/chat/completions", s.auth(s.chat))
	mux.HandleFunc("POST /v1/completions", s.auth(s.completions))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, &apiError{status: 404, Message: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), Type: "not_found_error"})
	})
	return mux
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, `{"status":"draining"}`, http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"status":"ok"}`)
}

func (s *Server) auth(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIKey == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.APIKey)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			s.fail(w, &apiError{status: 401, Message: "invalid or missing API key", Type: "authentication_error"})
			return
		}
		h(w, r)
	}
}

func (s *Server) fail(w http.ResponseWriter, e *apiError) {
	s.metrics.count(fmt.Sprint(e.status))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]any{"error": e})
}

// engineError maps an engine error to an API error.
func engineError(err error) *apiError {
	switch {
	case errors.Is(err, scheduler.ErrQueueFull):
		return &apiError{status: 429, Message: "server busy: " + err.Error(), Type: "rate_limit_error"}
	case errors.Is(err, scheduler.ErrTooLong):
		code := "context_length_exceeded"
		return &apiError{status: 400, Message: err.Error(), Type: "invalid_request_error", Code: &code}
	case errors.Is(err, scheduler.ErrInvalid):
		e := &apiError{status: 400, Message: err.Error(), Type: "invalid_request_error"}
		var se *toolcall.SchemaError
		switch {
		case errors.As(err, &se): // a tool schema tool_choice cannot enforce
			param := fmt.Sprintf("tools[%d].function.parameters", se.Tool)
			e.Param = &param
		case strings.Contains(e.Message, "logit_bias"): // a token id outside the vocabulary
			param := "logit_bias"
			e.Param = &param
		}
		return e
	case errors.Is(err, scheduler.ErrClosed):
		return &apiError{status: 503, Message: "server shutting down", Type: "server_error"}
	}
	return &apiError{status: 500, Message: err.Error(), Type: "server_error"}
}

// noteIgnored logs the request's extra fields (fields.go), each name once
// for the server's life, so that an operator learns a client relies on
// them and the log does not fill with one line per request. The names are
// the client's, so their number is bounded: a request logs at most
// maxNamedPerRequest new names (a later request that sends the others logs
// them), the server remembers at most maxRememberedFields, and once that
// many are logged it says, once, that it names no more.
func (s *Server) noteIgnored(path string, x *extraFields) {
	s.ignoredMu.Lock()
	defer s.ignoredMu.Unlock()
	named := 0
	for _, f := range x.names {
		switch {
		case s.ignored[f]:
			continue
		case len(s.ignored) >= maxRememberedFields:
			if !s.ignoredFull {
				s.ignoredFull = true
				s.cfg.Log.Warn("further request fields that are not OpenAI's and not implemented here are ignored without being named", "named", maxRememberedFields)
			}
			return
		case named == maxNamedPerRequest:
			return
		}
		if s.ignored == nil {
			s.ignored = map[string]bool{}
		}
		s.ignored[f] = true
		named++
		s.cfg.Log.Warn("request field ignored: not an OpenAI field and not implemented here (logged once)", "field", f, "path", path)
	}
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"object": "list", "data": []any{map[string]any{
		"id": s.cfg.ModelName, "object": "model", "created": s.created, "owned_by": "pio",
		"max_model_len": s.eng.MaxModelLen(),
	}}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// readBody reads a request body within the size limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if s.draining.Load() {
		return nil, &apiError{status: 503, Message: "server shutting down", Type: "server_error"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{status: 413, Message: fmt.Sprintf("request body over %d bytes", s.cfg.MaxBodyBytes), Type: "invalid_request_error"}
		}
		return nil, badRequest("", "reading the body: %v", err)
	}
	return body, nil
}

func (s *Server) checkModel(name string) *apiError {
	if name != "" && name != s.cfg.ModelName {
		code := "model_not_found"
		return &apiError{status: 404, Message: fmt.Sprintf("model %q does not exist; this server serves %q", name, s.cfg.ModelName), Type: "invalid_request_error", Code: &code}
	}
	return nil
}

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s-%x", prefix, b)
}

// timing records TTFT and inter-token latency of one request.
type timing struct {
	m     *metrics
	start time.Time
	last  time.Time
}

func (t *timing) tokens(n int) {
	if n == 0 {
		return
	}
	now := time.Now()
	if t.last.IsZero() {
		t.m.ttft.observe(now.Sub(t.start).Seconds())
		n--
		t.last = now
	}
	if n > 0 {
		per := now.Sub(t.last).Seconds() / float64(n)
		for i := 0; i < n; i++ {
			t.m.itl.observe(per)
		}
	}
	t.last = now
}

func (t *timing) done() { t.m.e2e.observe(time.Since(t.start).Seconds()) }

// sse writes server-sent events.
// Headers go out with the first event, so that an error before any
// token (a full queue, a prompt too long) is still a plain HTTP error.
type sse struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
	err     error
}

func newSSE(w http.ResponseWriter) *sse { return &sse{w: w, rc: http.NewResponseController(w)} }

func (e *sse) send(v any) {
	if e.err != nil {
		return
	}
	if !e.started {
		e.started = true
		h := e.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		e.w.WriteHeader(http.StatusOK)
	}
	b, err := json.Marshal(v)
	if err != nil {
		e.err = err
		return
	}
	// A client that stops reading for a minute is treated as gone: the
	// write fails and the request is cancelled.
	e.rc.SetWriteDeadline(time.Now().Add(time.Minute))
	if _, e.err = fmt.Fprintf(e.w, "data: %s\n\n", b); e.err == nil {
		e.err = e.rc.Flush()
	}
}

func (e *sse) done() {
	if e.err == nil {
		io.WriteString(e.w, "data: [DONE]\n\n")
		e.rc.Flush()
	}
}

// streamError sends an error event after headers went out.
func (e *sse) fail(err *apiError) { e.send(map[string]any{"error": err}) }

type usage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func usageOf(r pio.Result) *usage {
	u := &usage{PromptTokens: r.PromptTokens, CompletionTokens: r.CompletionTokens, TotalTokens: r.PromptTokens + r.CompletionTokens}
	u.PromptTokensDetails.CachedTokens = r.CachedTokens
	return u
}

// outcome names how a generation ended, for pio_requests_total.
func (s *Server) outcome(ctx context.Context, err error) {
	switch {
	case err == nil:
		s.metrics.count("200")
	case ctx.Err() != nil:
		s.metrics.count("cancelled")
	default: // counted by its status
		if engineError(err).status >= 500 {
			s.cfg.Log.Warn("generation failed", "err", err)
		}
	}
}

func trimSpaceOrNil(s string) *string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return &s
}
