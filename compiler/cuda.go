package compiler

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/runtime/engine"
)

// Build targets. TargetCPU is the default until the CUDA backend has been
// proven on a GPU: an engine built for CUDA also runs on the CPU backend
// (the kernels section is extra metadata), so the default only decides
// whether nvcc runs.
const (
	TargetCPU  = "cpu"
	TargetCUDA = "cuda"
)

// checkTarget normalises opt.Target and, for CUDA, finds nvcc before any
// work is done, so that a missing toolchain fails fast with a clear error.
func checkTarget(opt *Options) error {
	switch opt.Target {
	case "", TargetCPU:
		opt.Target = TargetCPU
	case TargetCUDA:
		if opt.NVCC == "" {
			p, err := cuda.FindNVCC()
			if err != nil {
				return fmt.Errorf("--target cuda needs nvcc: %w", err)
			}
			opt.NVCC = p
		}
	default:
		return fmt.Errorf("unknown target %q (want %s or %s)", opt.Target, TargetCPU, TargetCUDA)
	}
	return nil
}

// buildKernels generates and compiles a CUDA module for each plan (every
// stage of a multi-stage engine, named by names, then the main plan), for
// every target arch; each image is cached by its content hash, so an
// unchanged plan costs no nvcc run. It returns nils for the CPU target.
func buildKernels(plans []*ir.Plan, names []string, opt Options, logf func(string, ...any)) ([]*engine.Kernels, error) {
	out := make([]*engine.Kernels, len(plans))
	if opt.Target != TargetCUDA {
		return out, nil
	}
	mods := make([]*cuda.Module, len(plans))
	for i, p := range plans {
		m, err := cuda.Generate(p)
		if err != nil {
			if len(plans) > 1 {
				return nil, fmt.Errorf("stage %s: %w", names[i], err)
			}
			return nil, err
		}
		mods[i] = m
	}
	ver := nvccVersion(opt.NVCC)
	for i, m := range mods {
		what := "cuda"
		if len(plans) > 1 {
			what = fmt.Sprintf("cuda: stage %s (%d/%d)", names[i], i+1, len(plans))
		}
		logf("%s: %d kernels, %d launches; nvcc %s for %s", what, len(m.Kernels), len(m.Launches), opt.NVCC, strings.Join(cuda.DefaultArchs, ", "))
		imgs, err := cuda.Compile(context.Background(), m.Source, cuda.CompileOptions{
			NVCC: opt.NVCC,
			Progress: func(done, total int, arch string, cached bool) {
				how := "compiled"
				if cached {
					how = "cached"
				}
				logf("%s: %s %s (%d/%d)", what, arch, how, done, total)
			},
		})
		if err != nil {
			if len(plans) > 1 {
				return nil, fmt.Errorf("stage %s: %w", names[i], err)
			}
			return nil, err
		}
		out[i] = KernelsOf(m, imgs, ver)
	}
	return out, nil
}

// nvccVersion is the release line of `nvcc --version` ("nvcc release
// 13.0, V13.0.88"), its last line if it has none, or "" if it fails.
func nvccVersion(nvcc string) string {
	out, err := exec.Command(nvcc, "--version").Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	ver := lines[len(lines)-1]
	for _, l := range lines {
		if strings.Contains(l, "release") {
			ver = "nvcc " + strings.TrimSpace(l[strings.Index(l, "release"):])
		}
	}
	return ver
}

// KernelsOf is the engine's kernels section for a generated module and its
// compiled images.
func KernelsOf(m *cuda.Module, imgs []abi.Image, compiler string) *engine.Kernels {
	return &engine.Kernels{
		Source:      []byte(m.Source),
		Images:      imgs,
		Launches:    m.Launches,
		TileTokens:  int32(m.TileTokens),
		SplitSize:   int32(m.SplitSize),
		Argmax:      m.Argmax,
		ArgmaxVocab: int32(m.ArgmaxVocab),
		Candidates:  m.Candidates,
		Compiler:    compiler,
	}
}
