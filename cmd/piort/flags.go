package main

// The flags run, serve, load and bench share are defined once here, with
// the functions that read them, so the commands cannot drift apart: each
// command takes the groups that mean something to it and reads them with
// engineOptions and sampleOptions, pure functions of the cli.Context (no
// engine is opened) that refuse a value out of range by the flag's name.

import (
	"fmt"
	"math"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/pio"
)

// engineFlags size and place an engine: CPU threads, the step size, the
// KV cache, the weight check, the vision stage and the device. batching
// adds a server's batching flags (sequences per step, queue length).
func engineFlags(batching bool) []cli.Flag {
	fs := []cli.Flag{
		&cli.IntFlag{Name: "threads", Usage: "CPU threads, 0 = all (--device cpu only)"},
		&cli.IntFlag{Name: "max-step-tokens", Value: pio.DefaultMaxStepTokens, Usage: "tokens per step: the largest prefill chunk; batched prefill chunks and decodes share it"},
		&cli.IntFlag{Name: "cache-tokens", Value: pio.DefaultCacheTokens, Usage: "KV cache positions, rounded up to whole blocks: the most one sequence holds (prompt and output), shared by all sequences when batching"},
		&cli.IntFlag{Name: "block-size", Value: pio.DefaultBlockSize, Usage: "positions per KV cache block"},
		&cli.BoolFlag{Name: "verify", Usage: "check weight checksums when loading"},
		&cli.IntFlag{Name: "max-image-tokens", Value: pio.DefaultMaxImageTokens, Usage: "vision-language engines only: merged image tokens per request, all its images together"},
		deviceFlag(),
	}
	if batching {
		fs = append(fs,
			&cli.IntFlag{Name: "max-seqs", Value: pio.DefaultMaxSeqs, Usage: "sequences per batched step (at most --max-step-tokens)"},
			&cli.IntFlag{Name: "max-queue", Value: pio.DefaultMaxQueue, Usage: "requests waiting beyond the running ones; more get 429"},
		)
	}
	return fs
}

// pickFlags returns the flags of fs named names, in fs's order.
func pickFlags(fs []cli.Flag, names ...string) []cli.Flag {
	var out []cli.Flag
	for _, f := range fs {
		if slices.Contains(names, f.Names()[0]) {
			out = append(out, f)
		}
	}
	return out
}

// hasFlag reports whether the command being run offers the flag name.
func hasFlag(c *cli.Context, name string) bool {
	if c.Command == nil {
		return false
	}
	for _, f := range c.Command.Flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// engineConfig is what the engine flags say. opt.Backend stays nil until
// load makes it from device.
type engineConfig struct {
	opt    pio.Options
	device string
}

// engineOptions reads the engine flags the command offers (see
// engineFlags) and checks their ranges.
func engineOptions(c *cli.Context) (engineConfig, error) {
	ec := engineConfig{device: "cpu"}
	o := &ec.opt
	for _, f := range []struct {
		name string
		dst  *int
		min  int
	}{
		{"threads", &o.Threads, 0},
		{"max-step-tokens", &o.MaxStepTokens, 1},
		{"block-size", &o.BlockSize, 1},
		{"cache-tokens", &o.CacheTokens, 1},
		{"max-seqs", &o.MaxSeqs, 1},
		{"max-queue", &o.MaxQueue, 1},
	} {
		if !hasFlag(c, f.name) {
			continue
		}
		if v := c.Int(f.name); v < f.min {
			return ec, fmt.Errorf("--%s must be >= %d, got %d", f.name, f.min, v)
		} else {
			*f.dst = v
		}
	}
	if hasFlag(c, "cache-tokens") && o.CacheTokens < o.BlockSize {
		return ec, fmt.Errorf("--cache-tokens %d is less than one block (--block-size %d)", o.CacheTokens, o.BlockSize)
	}
	if hasFlag(c, "max-seqs") && o.MaxSeqs > o.MaxStepTokens {
		return ec, fmt.Errorf("--max-seqs %d exceeds --max-step-tokens %d: a step holds at most one token per sequence", o.MaxSeqs, o.MaxStepTokens)
	}
	// Unset, it stays 0 (pio's default), so that load can tell a text
	// engine that it was given a vision-only flag.
	if c.IsSet("max-image-tokens") {
		if o.MaxImageTokens = c.Int("max-image-tokens"); o.MaxImageTokens < 1 {
			return ec, fmt.Errorf("--max-image-tokens must be >= 1, got %d", o.MaxImageTokens)
		}
	}
	o.VerifyWeights = c.Bool("verify")
	if hasFlag(c, "device") {
		ec.device = c.String("device")
		kind, _, err := parseDevice(ec.device)
		if err != nil {
			return ec, err
		}
		if kind != "cpu" && c.IsSet("threads") {
			return ec, fmt.Errorf("--threads applies to --device cpu only")
		}
	}
	return ec, nil
}

// sharedOptions reads the engine and the sampling flags, which run,
// serve and load all offer.
func sharedOptions(c *cli.Context) (engineConfig, pio.GenerateOptions, error) {
	ec, err := engineOptions(c)
	if err != nil {
		return ec, pio.GenerateOptions{}, err
	}
	gen, err := sampleOptions(c)
	return ec, gen, err
}

// load opens the engine at path as ec says.
func (ec engineConfig) load(path string) (*pio.Engine, error) {
	opt := ec.opt
	var err error
	if opt.Backend, err = pioBackend(ec.device); err != nil {
		return nil, err
	}
	e, err := pio.Load(path, opt)
	if err != nil {
		return nil, err
	}
	if opt.MaxImageTokens != 0 && !e.Vision() {
		e.Close()
		return nil, fmt.Errorf("--max-image-tokens: %s is not a vision-language engine", path)
	}
	return e, nil
}

// contextHint says what bounds a sequence's positions: --cache-tokens,
// or the model's own maximum when that is smaller.
func (ec engineConfig) contextHint(e *pio.Engine) string {
	if e.MaxModelLen() < ec.opt.CacheTokens {
		return "the model's max_position_embeddings"
	}
	return "raise --cache-tokens"
}

// sampleFlags are the sampling parameters. Left out, each takes the
// model's generation_config value (else the OpenAI default).
func sampleFlags() []cli.Flag {
	const gen = "the model's generation_config"
	return []cli.Flag{
		&cli.Float64Flag{Name: "temperature", DefaultText: gen, Usage: "sampling temperature in [0, 2], 0 = greedy"},
		&cli.Float64Flag{Name: "top-p", DefaultText: gen, Usage: "nucleus sampling: keep the most likely tokens up to this probability, in (0, 1]"},
		&cli.IntFlag{Name: "top-k", DefaultText: gen, Usage: "keep the K most likely tokens, 0 = all"},
		&cli.Float64Flag{Name: "min-p", DefaultText: gen, Usage: "drop tokens less likely than this times the most likely, in [0, 1]"},
		&cli.Float64Flag{Name: "repetition-penalty", DefaultText: gen, Usage: "divide the logits of prompt and output tokens by this, in (0, 2], 1 = none"},
		&cli.Float64Flag{Name: "presence-penalty", Usage: "subtract this from the logit of every token already generated, in [-2, 2]"},
		&cli.Float64Flag{Name: "frequency-penalty", Usage: "subtract this from a token's logit once per time it was generated, in [-2, 2]"},
		&cli.Uint64Flag{Name: "seed", DefaultText: "random", Usage: "sampling seed: same seed, same output"},
	}
}

// sampleOptions reads the sampling flags that were set into the sampling
// fields of pio.GenerateOptions (the others stay nil or 0) and checks
// their ranges, which are those the OpenAI API (package server) accepts.
func sampleOptions(c *cli.Context) (pio.GenerateOptions, error) {
	var o pio.GenerateOptions
	var err error
	float := func(name string, lo, hi float64, openLo bool) *float64 {
		if err != nil || !c.IsSet(name) {
			return nil
		}
		v := c.Float64(name)
		if math.IsNaN(v) || v < lo || v > hi || (openLo && v == lo) {
			left := "["
			if openLo {
				left = "("
			}
			err = fmt.Errorf("--%s must be in %s%v, %v], got %v", name, left, lo, hi, v)
			return nil
		}
		return &v
	}
	o.Temperature = float("temperature", 0, 2, false)
	o.TopP = float("top-p", 0, 1, true)
	o.MinP = float("min-p", 0, 1, false)
	o.RepetitionPenalty = float("repetition-penalty", 0, 2, true)
	if p := float("presence-penalty", -2, 2, false); p != nil {
		o.PresencePenalty = *p
	}
	if p := float("frequency-penalty", -2, 2, false); p != nil {
		o.FrequencyPenalty = *p
	}
	if err != nil {
		return o, err
	}
	if c.IsSet("top-k") {
		k := c.Int("top-k")
		if k < 0 {
			return o, fmt.Errorf("--top-k must be >= 0, got %d", k)
		}
		o.TopK = &k
	}
	if c.IsSet("seed") {
		s := c.Uint64("seed")
		o.Seed = &s
	}
	return o, nil
}

// checkGreedy refuses the flags that only shape a random draw when
// decoding is greedy (temperature 0; why says what made it so).
func checkGreedy(o pio.GenerateOptions, why string) error {
	if o.Temperature == nil || *o.Temperature != 0 {
		return nil
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"top-p", o.TopP != nil}, {"top-k", o.TopK != nil}, {"min-p", o.MinP != nil}, {"seed", o.Seed != nil}} {
		if f.set {
			return fmt.Errorf("--%s has no effect: decoding is greedy (%s)", f.name, why)
		}
	}
	return nil
}

// sampleParams is o's sampling as OpenAI request parameters: the ones set.
func sampleParams(o pio.GenerateOptions) map[string]any {
	m := map[string]any{}
	for k, v := range map[string]*float64{"temperature": o.Temperature, "top_p": o.TopP, "min_p": o.MinP, "repetition_penalty": o.RepetitionPenalty} {
		if v != nil {
			m[k] = *v
		}
	}
	if o.TopK != nil {
		m["top_k"] = *o.TopK
	}
	if o.PresencePenalty != 0 {
		m["presence_penalty"] = o.PresencePenalty
	}
	if o.FrequencyPenalty != 0 {
		m["frequency_penalty"] = o.FrequencyPenalty
	}
	if o.Seed != nil {
		m["seed"] = int64(*o.Seed) // the server reads an int64 and takes its bits back
	}
	return m
}
