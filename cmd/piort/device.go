package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/pio"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/cuda"
	"github.com/inference-pio/pio/runtime/engine"
)

// deviceFlag is --device: cpu (the default) or cuda[:N].
func deviceFlag() cli.Flag {
	return &cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, or cuda[:N] (an engine built with pioc build --target cuda)"}
}

// parseDevice splits "cpu", "cuda" or "cuda:N".
func parseDevice(s string) (kind string, ordinal int, err error) {
	kind, num, hasNum := strings.Cut(strings.ToLower(strings.TrimSpace(s)), ":")
	switch {
	case kind == "cpu" && !hasNum:
		return "cpu", 0, nil
	case kind == "cuda" && !hasNum:
		return "cuda", 0, nil
	case kind == "cuda":
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 {
			return "", 0, fmt.Errorf("--device %q: want cuda:N with N a device ordinal", s)
		}
		return "cuda", n, nil
	}
	return "", 0, fmt.Errorf("--device %q: want cpu, cuda or cuda:N", s)
}

// backendSize is what both backends are sized by; stage names the plan
// ("" the main one, "vision" Qwen3-VL's vision stage).
type backendSize struct {
	stage                                             string
	maxTokens, numBlocks, blockSize, maxSeqs, threads int
}

// newBackend makes the backend --device asks for. With cuda, a stage runs
// on the GPU from the kernels it carries; an engine whose stage has none
// is refused (rebuild it with pioc build --target cuda).
func newBackend(device string, e *engine.Engine, sz backendSize) (runtime.Backend, error) {
	kind, n, err := parseDevice(device)
	if err != nil {
		return nil, err
	}
	if kind == "cuda" {
		return cuda.StageFromEngine(e, sz.stage, cuda.Options{Device: n, MaxTokens: sz.maxTokens, NumBlocks: sz.numBlocks, BlockSize: sz.blockSize, MaxSeqs: sz.maxSeqs})
	}
	if sz.stage != "" {
		return cpu.StageFromEngine(e, sz.stage, cpu.Options{MaxTokens: sz.maxTokens, NumBlocks: sz.numBlocks, BlockSize: sz.blockSize, MaxSeqs: sz.maxSeqs, Threads: sz.threads})
	}
	return cpu.FromEngine(e, cpu.Options{MaxTokens: sz.maxTokens, NumBlocks: sz.numBlocks, BlockSize: sz.blockSize, MaxSeqs: sz.maxSeqs, Threads: sz.threads})
}

// pioBackend is the pio.Options.Backend for --device: nil (the CPU default)
// for cpu, else a factory that builds the CUDA backends (the text plan's
// and a vision stage's).
func pioBackend(device string) (func(*engine.Engine, pio.BackendSize) (runtime.Backend, error), error) {
	kind, _, err := parseDevice(device)
	if err != nil || kind == "cpu" {
		return nil, err
	}
	return func(e *engine.Engine, sz pio.BackendSize) (runtime.Backend, error) {
		return newBackend(device, e, backendSize{stage: sz.Stage, maxTokens: sz.MaxTokens, numBlocks: sz.NumBlocks, blockSize: sz.BlockSize, maxSeqs: sz.MaxSeqs, threads: sz.Threads})
	}, nil
}
