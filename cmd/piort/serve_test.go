package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/server"
)

func tinyEngine(t *testing.T) string {
	t.Helper()
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	eng := filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: eng, DType: ir.F32}); err != nil {
		t.Fatal(err)
	}
	return eng
}

// TestServeDrains stops the server (as SIGTERM does) while a streamed
// request is in flight: the request still gets every token and [DONE],
// the listener closes, and serve returns cleanly.
func TestServeDrains(t *testing.T) {
	e, err := pio.Load(tinyEngine(t), pio.Options{MaxStepTokens: 16, CacheTokens: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, e, server.Config{}, 30*time.Second) }()

	resp, err := http.Post(url+"/v1/completions", "application/json",
		strings.NewReader(`{"prompt":[1,2,3],"max_tokens":400,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "data: ") {
		t.Fatalf("first event %q, %v", first, err)
	}
	stop() // SIGTERM
	var rest bytes.Buffer
	rest.ReadFrom(rd)
	if !strings.Contains(rest.String(), `"completion_tokens":400`) || !strings.HasSuffix(rest.String(), "data: [DONE]\n\n") {
		t.Errorf("in-flight request cut short: ...%s", rest.String()[max(0, rest.Len()-300):])
	}
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := http.Get(url + "/health"); err == nil {
		t.Errorf("server still accepts connections after draining")
	}
}

func TestRunText(t *testing.T) {
	eng := tinyEngine(t)
	run := func(stdin string, args ...string) string {
		t.Helper()
		app := newApp()
		var out bytes.Buffer
		app.Writer, app.Reader = &out, strings.NewReader(stdin)
		a, err := cliargs.Reorder(app, append([]string{"piort", "run", eng}, args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := app.Run(a); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String()
	}
	e, err := pio.Load(eng, pio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	zero := 0.0
	opt := pio.GenerateOptions{MaxTokens: 12, Temperature: &zero}
	raw, err := e.Generate(context.Background(), "Hello", opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := run("", "-p", "Hello", "--raw", "--max-tokens", "12", "--temperature", "0"); got != raw.Text+"\n" {
		t.Errorf("--raw: %q, want %q", got, raw.Text+"\n")
	}
	msgs := []pio.Message{{Role: "user", Content: "Hello"}}
	chat, err := e.Chat(context.Background(), msgs, pio.ChatOptions{GenerateOptions: opt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := run("", "-p", "Hello", "--max-tokens", "12", "--temperature", "0")
	if !strings.Contains(got, chat.Content) || (chat.ReasoningContent != "" && !strings.Contains(got, chat.ReasoningContent)) {
		t.Errorf("chat: %q, want the content %q", got, chat.Content)
	}
	// Interactive: two turns, then EOF.
	got = run("Hello\nAgain\n", "--max-tokens", "12", "--temperature", "0")
	if strings.Count(got, ">>> ") != 3 || !strings.Contains(got, chat.Content) {
		t.Errorf("interactive: %q", got)
	}
}

func TestLoadSmoke(t *testing.T) {
	eng := tinyEngine(t)
	app := newApp()
	var out bytes.Buffer
	app.Writer = &out
	a, err := cliargs.Reorder(app, []string{"piort", "load", eng, "--concurrency", "4", "--duration", "200ms", "--max-tokens", "8"})
	if err != nil {
		t.Fatal(err)
	}
	if err := app.Run(a); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), " 0 errors") || !strings.Contains(out.String(), "TTFT p50") {
		t.Errorf("report:\n%s", out.String())
	}
	t.Log(out.String())
}

// TestServeImageOpenAIClient is issue 8's "done when": the official OpenAI
// Go client sends a chat message with two images (image_url data: URLs)
// to a live `piort serve` of the tiny Qwen3-VL engine (pioc's two-stage
// build of testdata/tiny/qwen3vl) and gets transformers' greedy
// continuation back, twice (the second time from the prefix cache).
func TestServeImageOpenAIClient(t *testing.T) {
	eng := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: "../../testdata/tiny/qwen3vl", Output: eng, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	e, err := pio.Load(eng, pio.Options{MaxStepTokens: 8, CacheTokens: 512, BlockSize: 4, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, ln, e, server.Config{ModelName: "tiny-vl", APIKey: "k"}, 10*time.Second)
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// The golden prompt as a chat message (its rendering was checked by
	// transformers: testdata/tiny/qwen3vl/chat_request.json), images inline.
	var req struct {
		Messages []struct {
			Content []struct{ Type, Text string }
		}
	}
	b, err := os.ReadFile("../../testdata/tiny/qwen3vl/chat_request.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	images := []string{"a.png", "b.png"}
	var parts []openai.ChatCompletionContentPartUnionParam
	for _, p := range req.Messages[0].Content {
		if p.Type == "text" {
			parts = append(parts, openai.TextContentPart(p.Text))
			continue
		}
		img, err := os.ReadFile(filepath.Join("../../testdata/images", images[0]))
		if err != nil {
			t.Fatal(err)
		}
		images = images[1:]
		parts = append(parts, openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{
			URL: "data:image/png;base64," + base64.StdEncoding.EncodeToString(img)}))
	}
	f, err := hf.OpenSafetensors("../../testdata/tiny/qwen3vl/golden.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := f.Tensor("greedy")
	var want strings.Builder
	for i := 0; i+8 <= len(g.Data); i += 8 {
		fmt.Fprintf(&want, "<t%d>", int64(binary.LittleEndian.Uint64(g.Data[i:])))
	}
	f.Close()

	c := openai.NewClient(option.WithBaseURL("http://"+ln.Addr().String()+"/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
	params := openai.ChatCompletionNewParams{
		Model:       "tiny-vl",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage(parts)},
		MaxTokens:   openai.Int(8),
		Temperature: openai.Float(0),
	}
	for round := range 2 {
		res, err := c.Chat.Completions.New(context.Background(), params)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Choices) != 1 || res.Choices[0].Message.Content != want.String() {
			t.Fatalf("round %d: %+v, transformers %q", round, res.Choices, want.String())
		}
		if res.Usage.PromptTokens != 24 || res.Usage.CompletionTokens != 8 {
			t.Errorf("round %d: usage %+v, want 24 prompt tokens (16 text, 8 image) and 8 completion tokens", round, res.Usage)
		}
		if cached := res.Usage.PromptTokensDetails.CachedTokens; round == 1 && cached < 16 {
			t.Errorf("repeat: %d cached prompt tokens, want the image prefix served from the cache", cached)
		}
	}
	// Streamed, the same text arrives in pieces.
	stream := c.Chat.Completions.NewStreaming(context.Background(), params)
	var streamed strings.Builder
	for stream.Next() {
		if ch := stream.Current(); len(ch.Choices) > 0 {
			streamed.WriteString(ch.Choices[0].Delta.Content)
		}
	}
	if err := stream.Err(); err != nil || streamed.String() != want.String() {
		t.Errorf("streamed %q, %v; transformers %q", streamed.String(), err, want.String())
	}
	// A broken image is the client's fault.
	bad := params
	bad.Messages = []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
		openai.TextContentPart("<t1>"),
		openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\ntruncated"))}),
	})}
	var apiErr *openai.Error
	if _, err := c.Chat.Completions.New(context.Background(), bad); !errors.As(err, &apiErr) || apiErr.StatusCode != 400 {
		t.Errorf("corrupt image: %v, want a 400", err)
	}
}

// TestServeHybrid serves the tiny Qwen3-Next (Gated DeltaNet + gated
// attention) over HTTP: the golden prompts, sent concurrently twice, are
// continuously batched (chunked prefill mixed with recurrent decode) and
// each returns transformers' greedy continuation; the repeat reuses no
// cached prefix, since the model keeps per-sequence state.
func TestServeHybrid(t *testing.T) {
	g, err := golden.Load("qwen3next/dense")
	if err != nil {
		t.Fatal(err)
	}
	eng := filepath.Join(t.TempDir(), "next.pio")
	if _, err := compiler.Build(compiler.Options{Source: g.Dir, Output: eng, DType: ir.F32}); err != nil {
		t.Fatal(err)
	}
	e, err := pio.Load(eng, pio.Options{MaxStepTokens: 48, MaxSeqs: 4, CacheTokens: 1024, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, e, server.Config{}, 10*time.Second) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for round := range 2 {
		errs := make(chan error, len(g.Prompts))
		for i, p := range g.Prompts {
			go func() {
				body, _ := json.Marshal(map[string]any{"prompt": p.IDs, "max_tokens": len(p.Greedy), "temperature": 0, "ignore_eos": true, "logprobs": 1})
				resp, err := http.Post(url+"/v1/completions", "application/json", bytes.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				defer resp.Body.Close()
				var out struct {
					Choices []struct {
						Logprobs struct {
							Tokens []string `json:"tokens"`
						} `json:"logprobs"`
					} `json:"choices"`
					Usage struct {
						CompletionTokens int `json:"completion_tokens"`
						Details          struct {
							Cached int `json:"cached_tokens"`
						} `json:"prompt_tokens_details"`
					} `json:"usage"`
				}
				raw, _ := io.ReadAll(resp.Body)
				if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 || len(out.Choices) != 1 {
					errs <- fmt.Errorf("round %d prompt %d: status %d, %v: %s", round, i, resp.StatusCode, err, raw)
					return
				}
				var want []string
				for _, id := range p.Greedy {
					want = append(want, fmt.Sprintf("token_id:%d", id))
				}
				if got := out.Choices[0].Logprobs.Tokens; strings.Join(got, " ") != strings.Join(want, " ") || out.Usage.Details.Cached != 0 {
					errs <- fmt.Errorf("round %d prompt %d: tokens %v (cached %d), want %v and no cached prefix", round, i, got, out.Usage.Details.Cached, want)
					return
				}
				errs <- nil
			}()
		}
		for range g.Prompts {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	}
}
