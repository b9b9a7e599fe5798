package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/server"
)

func loadCmd() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "url", Usage: "server base URL, e.g. http://127.0.0.1:8000"},
		&cli.StringFlag{Name: "api-key", EnvVars: []string{"PIO_API_KEY"}, Usage: "Bearer key"},
		&cli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Value: 64, Usage: "concurrent streaming clients"},
		&cli.DurationFlag{Name: "duration", Value: 20 * time.Second, Usage: "how long clients start new requests"},
		&cli.IntFlag{Name: "max-tokens", Value: 64, Usage: "tokens per request"},
		&cli.StringFlag{Name: "endpoint", Value: "chat", Usage: "chat or completions"},
	}
	flags = append(flags, engineFlags(true)...)
	return &cli.Command{
		Name:  "load",
		Usage: "load-test a server: N concurrent streaming clients for a bounded time",
		Description: "With --url, drives a running `piort serve`; with an ENGINE argument, serves it in-process on loopback first\n" +
			"(the engine flags size it, and only then apply).\n" +
			"Every request carries the sampling flags given (the others are the server's defaults) and a seed: request i\n" +
			"of client w is seeded with --seed + 1000·w + i.\n" +
			"Reports throughput, TTFT and inter-token latency percentiles, errors, and the server's goroutines and RSS before and after.",
		ArgsUsage: "[ENGINE]",
		Flags:     append(flags, sampleFlags()...),
		Action: func(c *cli.Context) error {
			cfg, err := parseLoad(c)
			if err != nil {
				return fmt.Errorf("load: %w", err)
			}
			url := cfg.url
			if url == "" {
				e, err := cfg.engine.load(c.Args().First())
				if err != nil {
					return err
				}
				defer e.Close()
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					return err
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- serve(ctx, ln, e, server.Config{APIKey: cfg.apiKey}, 10*time.Second) }()
				defer func() { cancel(); <-done }()
				url = "http://" + ln.Addr().String()
			}
			r, err := runLoad(url, cfg)
			if err != nil {
				return err
			}
			r.print(c.App.Writer)
			if r.Errors > 0 {
				return fmt.Errorf("load: %d requests failed", r.Errors)
			}
			return nil
		},
	}
}

// loadConfig is what `piort load`'s flags say.
type loadConfig struct {
	engine                engineConfig // for an in-process ENGINE
	url, apiKey, endpoint string
	concurrency           int
	maxTokens             int
	duration              time.Duration
	sample                pio.GenerateOptions // what every request asks for
}

// parseLoad reads `piort load`'s flags; with --url it refuses the engine
// flags, which size only an in-process ENGINE.
func parseLoad(c *cli.Context) (loadConfig, error) {
	cfg := loadConfig{url: strings.TrimRight(c.String("url"), "/"), apiKey: c.String("api-key"), endpoint: c.String("endpoint"),
		concurrency: c.Int("concurrency"), maxTokens: c.Int("max-tokens"), duration: c.Duration("duration")}
	if (cfg.url == "") == (c.NArg() == 0) || c.NArg() > 1 {
		return cfg, fmt.Errorf("give either --url or one ENGINE argument")
	}
	if cfg.concurrency < 1 || cfg.maxTokens < 1 || cfg.duration <= 0 {
		return cfg, fmt.Errorf("--concurrency, --max-tokens and --duration must be positive")
	}
	if cfg.endpoint != "chat" && cfg.endpoint != "completions" {
		return cfg, fmt.Errorf("--endpoint must be chat or completions")
	}
	if cfg.url != "" {
		for _, f := range engineFlags(true) {
			if n := f.Names()[0]; c.IsSet(n) {
				return cfg, fmt.Errorf("--%s sizes an in-process ENGINE; with --url the server's own flags do", n)
			}
		}
	}
	var err error
	if cfg.engine, cfg.sample, err = sharedOptions(c); err != nil {
		return cfg, err
	}
	return cfg, checkGreedy(cfg.sample, "--temperature 0")
}

type loadReport struct {
	Concurrency           int
	Wall                  time.Duration
	Requests, Errors      int
	Tokens                int
	TTFT, ITL             []time.Duration
	Before, During, After serverMem
	FirstError            string
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(p*float64(len(d))))]
}

func (r *loadReport) print(w io.Writer) {
	slices.Sort(r.TTFT)
	slices.Sort(r.ITL)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", d.Seconds()*1000) }
	fmt.Fprintf(w, "clients %d, %.1f s: %d requests, %d errors, %d tokens\n", r.Concurrency, r.Wall.Seconds(), r.Requests, r.Errors, r.Tokens)
	fmt.Fprintf(w, "throughput %.1f tok/s, %.2f req/s\n", float64(r.Tokens)/r.Wall.Seconds(), float64(r.Requests)/r.Wall.Seconds())
	fmt.Fprintf(w, "TTFT p50 %s p99 %s; ITL p50 %s p99 %s\n", ms(pct(r.TTFT, 0.5)), ms(pct(r.TTFT, 0.99)), ms(pct(r.ITL, 0.5)), ms(pct(r.ITL, 0.99)))
	mib := func(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
	fmt.Fprintf(w, "server goroutines %.0f before, %.0f at the end of the load, %.0f after\n", r.Before.goroutines, r.During.goroutines, r.After.goroutines)
	fmt.Fprintf(w, "server RSS %s before, %s at the end, %s after; Go heap in use %s before, %s at the end, %s after\n",
		mib(r.Before.rss), mib(r.During.rss), mib(r.After.rss), mib(r.Before.heap), mib(r.During.heap), mib(r.After.heap))
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

var metricLine = regexp.MustCompile(`(?m)^(go_goroutines|process_resident_memory_bytes|go_memstats_heap_inuse_bytes) (\S+)$`)

// serverMem is what /metrics says of the server process.
type serverMem struct{ goroutines, rss, heap float64 }

func scrape(url string) (m serverMem, err error) {
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, f := range metricLine.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(f[2], 64)
		switch f[1] {
		case "go_goroutines":
			m.goroutines = v
		case "process_resident_memory_bytes":
			m.rss = v
		default:
			m.heap = v
		}
	}
	return m, nil
}

func runLoad(url string, cfg loadConfig) (*loadReport, error) {
	n := cfg.concurrency
	r := &loadReport{Concurrency: n}
	var err error
	if r.Before, err = scrape(url); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for w := 0; w < n; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				one := loadRequest(client, url, cfg, w, i)
				mu.Lock()
				r.Requests++
				if one.err != nil {
					r.Errors++
					if r.FirstError == "" {
						r.FirstError = one.err.Error()
					}
				} else {
					r.Tokens += one.tokens
					r.TTFT = append(r.TTFT, one.ttft)
					r.ITL = append(r.ITL, one.itl...)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.Wall = time.Since(start)
	r.During, _ = scrape(url)
	tr.CloseIdleConnections()
	// Let the server notice the closed connections.
	for i := 0; i < 100; i++ {
		time.Sleep(20 * time.Millisecond)
		if r.After, err = scrape(url); err != nil {
			return nil, err
		}
		if r.After.goroutines <= r.Before.goroutines {
			break
		}
	}
	return r, nil
}

type oneResult struct {
	ttft   time.Duration
	itl    []time.Duration
	tokens int
	err    error
}

// loadRequest sends one streaming request: a shared system prompt (the
// prefix cache's case) and a question of its own, with cfg's sampling and
// the seed of client worker's request i.
func loadRequest(client *http.Client, url string, cfg loadConfig, worker, i int) (res oneResult) {
	question := fmt.Sprintf("Client %d, request %d: write a short story about the number %d.", worker, i, worker*1000+i)
	body := sampleParams(cfg.sample)
	var seed uint64
	if cfg.sample.Seed != nil {
		seed = *cfg.sample.Seed
	}
	body["seed"] = int64(seed + uint64(worker*1000+i))
	body["max_tokens"], body["stream"], body["stream_options"], body["ignore_eos"] = cfg.maxTokens, true, map[string]any{"include_usage": true}, true
	maxTokens, key := cfg.maxTokens, cfg.apiKey
	path := "/v1/chat/completions"
	if cfg.endpoint == "chat" {
		body["messages"] = []map[string]string{{"role": "system", "content": "You are a helpful assistant who answers briefly and precisely."}, {"role": "user", "content": question}}
	} else {
		path = "/v1/completions"
		body["prompt"] = "You are a helpful assistant who answers briefly and precisely.\n" + question
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		res.err = err
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		res.err = fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(msg)))
		return
	}
	rd := bufio.NewReader(resp.Body)
	last := time.Time{}
	sawDone := false
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			break
		}
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			sawDone = true
			break
		}
		var ev struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content   string `json:"content"`
					Reasoning string `json:"reasoning_content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			res.err = fmt.Errorf("bad event %q: %v", data, err)
			return
		}
		if ev.Error != nil {
			res.err = fmt.Errorf("stream error: %s", ev.Error.Message)
			return
		}
		if ev.Usage != nil {
			res.tokens = ev.Usage.CompletionTokens
		}
		if len(ev.Choices) > 0 && ev.Choices[0].Text+ev.Choices[0].Delta.Content+ev.Choices[0].Delta.Reasoning != "" {
			now := time.Now()
			if last.IsZero() {
				res.ttft = now.Sub(t0)
			} else {
				res.itl = append(res.itl, now.Sub(last))
			}
			last = now
		}
	}
	if !sawDone {
		res.err = fmt.Errorf("stream ended without [DONE]")
	} else if res.tokens != maxTokens {
		res.err = fmt.Errorf("got %d tokens, want %d", res.tokens, maxTokens)
	}
	return
}
