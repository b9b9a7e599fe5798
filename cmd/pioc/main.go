// Command pioc compiles a Hugging Face checkpoint into an Inference-PIO
// engine file and inspects engines.
//
//	pioc build qwen3-0.6b -o engine.pio [--dtype f32|bf16] [--kv-dtype auto|f32|bf16] [--quant int8|int4|fp8]
//	pioc inspect engine.pio
//	pioc list
package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime/engine"
)

func main() { cliargs.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:  "pioc",
		Usage: "compile Hugging Face checkpoints into Inference-PIO engines",
		Commands: []*cli.Command{
			buildCmd(), inspectCmd(), listCmd(),
			{Name: "passes", Usage: "print the optimisation pipeline", Action: func(c *cli.Context) error {
				width := 0
				for _, p := range passes.Pipeline {
					width = max(width, len(p.Name))
				}
				for i, p := range passes.Pipeline {
					kind := ""
					if p.Fusion {
						kind = "fusion"
					}
					fmt.Fprintf(c.App.Writer, "%2d  %-*s %-7s%s\n", i+1, width, p.Name, kind, p.Doc)
				}
				return nil
			}},
		},
	}
}

func buildCmd() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "compile a model (registry name or checkpoint directory) into an engine",
		ArgsUsage: "MODEL|DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "engine.pio", Usage: "engine file to write"},
			&cli.StringFlag{Name: "dtype", Value: "bf16", Usage: "weight storage dtype: f32 or bf16 (compute is f32 either way)"},
			&cli.StringFlag{Name: "kv-dtype", Value: "auto", Usage: "KV cache storage dtype: auto, f32 or bf16 (auto: f32 for an f32 engine, bf16 for bf16 or quantized engines)"},
			&cli.StringFlag{Name: "quant", Usage: "weight-only quantization of matmul weights: int8, int4 or fp8 (group-wise f32 scales)"},
			&cli.IntFlag{Name: "quant-group", Value: 32, Usage: "with --quant: weights per quantization scale (a multiple of 32: 32, 64, 128, ...)"},
			&cli.StringFlag{Name: "quant-lm-head", Usage: "lm_head format with --quant: int8, int4, fp8 or none (default: int8 for int4, else as --quant)"},
			&cli.BoolFlag{Name: "check", Usage: "verify the graph before and after every pass"},
			&cli.StringFlag{Name: "dump-ir", Usage: "write the graph text after each pass into `DIR`"},
			&cli.StringFlag{Name: "dump-only", Usage: "with --dump-ir, dump after this pass only (a pass the build runs, or input)"},
			&cli.BoolFlag{Name: "taps", Usage: "keep per-layer hidden states as engine outputs (debugging)"},
			&cli.BoolFlag{Name: "no-fuse", Usage: "skip the fusion passes (an unfused engine, to compare with)"},
			&cli.StringSliceFlag{Name: "skip-pass", Usage: "leave pass `NAME` out of the pipeline (repeatable; see pioc passes)"},
			&cli.StringFlag{Name: "target", Value: "cpu", Usage: "cpu, or cuda: also generate CUDA kernels and compile them with nvcc (sm_80, sm_89, sm_90a + PTX)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := buildOptions(c)
			if err != nil {
				return fmt.Errorf("build: %w", err)
			}
			start := time.Now()
			errw := c.App.ErrWriter
			if errw == nil {
				errw = os.Stderr
			}
			opt := cfg.opt
			if !cfg.quiet {
				opt.Log = func(format string, args ...any) {
					fmt.Fprintf(errw, "[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
				}
				last := -1
				opt.Progress = func(done, total int64) {
					if total <= 0 {
						return
					}
					if total < 16<<20 {
						return // small engines are written in a blink
					}
					if pct := int(done * 100 / total); pct/10 != last/10 || done == total {
						last = pct
						fmt.Fprintf(errw, "[%6.2fs] weights %3d%% (%s / %s)\n", time.Since(start).Seconds(), pct, human(done), human(total))
					}
				}
			}
			res, err := compiler.Build(opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s (%s, %d steps) in %.2fs\n", opt.Output, human(res.Bytes), len(res.Plan.Steps), time.Since(start).Seconds())
			return nil
		},
	}
}

func inspectCmd() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "describe an engine file",
		ArgsUsage: "ENGINE",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "plan", Usage: "print every step of the plan"},
			&cli.BoolFlag{Name: "verify", Usage: "check every weight's checksum"},
		},
		Action: func(c *cli.Context) error {
			cfg, err := inspectOptions(c)
			if err != nil {
				return fmt.Errorf("inspect: %w", err)
			}
			e, err := engine.Open(cfg.path, engine.OpenOptions{VerifyWeights: cfg.verify})
			if err != nil {
				return err
			}
			defer e.Close()
			w := c.App.Writer
			m := e.Meta
			fmt.Fprintf(w, "engine     %s\nformat     %d.%d\nproducer   %s\n", cfg.path, e.Header.Major, e.Header.Minor, m.Producer)
			fmt.Fprintf(w, "model      %s (%s) %s\n", orDash(m.Model.Name), m.Model.Architecture, m.Model.HFRepo)
			var wbytes int64
			for _, we := range e.Weights {
				wbytes += int64(we.Length)
			}
			p := m.Plan
			fmt.Fprintf(w, "weights    %d tensors, %s\n", len(e.Weights), human(wbytes))
			fmt.Fprintf(w, "plan       %d steps, %d buffers, %d caches, arena %d B/token + %d B\n", len(p.Steps), len(p.Buffers), len(p.Caches), p.ArenaPerT, p.ArenaFixed)
			if line := kvLine(p); line != "" {
				fmt.Fprintf(w, "kv cache   %s\n", line)
			}
			var outs []string
			for _, o := range p.Outputs {
				outs = append(outs, o.Name)
			}
			fmt.Fprintf(w, "outputs    %s\n", strings.Join(outs, ", "))
			fmt.Fprintf(w, "tokenizer  %s\nchat tmpl  %s\n", present(len(m.TokenizerJSON)), present(len(m.ChatTemplate)))
			fmt.Fprintf(w, "kernels    %s\n", kernelsLine(m.Kernels))
			if cfg.verify {
				fmt.Fprintln(w, "checksums  ok")
			}
			if cfg.plan {
				fmt.Fprint(w, ir.PrintPlan(p))
			}
			return nil
		},
	}
}

func listCmd() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the models pioc knows by name and whether a checkpoint is in the Hugging Face cache",
		Action: func(c *cli.Context) error {
			supported := map[string]bool{}
			for _, a := range models.Architectures() {
				supported[a] = true
			}
			fmt.Fprintf(c.App.Writer, "%-24s %-36s %-34s %-9s %s\n", "NAME", "HF REPO", "ARCHITECTURE", "BUILDS", "CACHED")
			for _, e := range models.List() {
				cached := "no"
				if dir, err := hf.FindSnapshot(e.HFRepo); err == nil {
					cached = dir
				}
				builds := "not yet"
				if supported[e.Architecture] {
					builds = "yes"
				}
				fmt.Fprintf(c.App.Writer, "%-24s %-36s %-34s %-9s %s\n", e.Name, e.HFRepo, e.Architecture, builds, cached)
			}
			fmt.Fprintf(c.App.Writer, "cache: %s (set HF_HOME or HF_HUB_CACHE to change)\n", hf.CacheDir())
			return nil
		},
	}
}

// kvLine describes the plan's paged caches: their dtypes and the bytes one
// position takes in all of them; "" when there are none.
func kvLine(p *ir.Plan) string {
	var dts []string
	var perPos int64
	for _, c := range p.Caches {
		if !c.Kind.Paged() {
			continue
		}
		if s := c.DType.String(); !slices.Contains(dts, s) {
			dts = append(dts, s)
		}
		for _, e := range c.Entries {
			n, _ := e.Elems(0, 0)
			perPos += n * int64(c.DType.Size())
		}
	}
	if len(dts) == 0 {
		return ""
	}
	return fmt.Sprintf("%s, %d B/position", strings.Join(dts, ", "), perPos)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func present(n int) string {
	if n == 0 {
		return "absent"
	}
	return fmt.Sprintf("%d bytes", n)
}
