package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/passes"
)

// buildConfig is what `pioc build`'s flags say.
type buildConfig struct {
	opt   compiler.Options // without Log and Progress
	quiet bool
}

// buildOptions reads `pioc build`'s flags, a pure function of the
// context: values out of range and flags that would change nothing are
// errors naming the flag.
func buildOptions(c *cli.Context) (buildConfig, error) {
	if c.NArg() != 1 {
		return buildConfig{}, fmt.Errorf("want one MODEL or DIR argument, got %d (try `pioc list`)", c.NArg())
	}
	var dt ir.DType
	switch c.String("dtype") {
	case "f32":
		dt = ir.F32
	case "bf16":
		dt = ir.BF16
	default:
		return buildConfig{}, fmt.Errorf("--dtype must be f32 or bf16, got %q", c.String("dtype"))
	}
	kvdt, err := compiler.ParseKVDType(c.String("kv-dtype"))
	if err != nil {
		return buildConfig{}, err
	}
	opt := compiler.Options{
		Source: c.Args().First(), Output: c.String("output"), DType: dt, KVDType: kvdt,
		Check: c.Bool("check"), DumpIR: c.String("dump-ir"), DumpOnly: c.String("dump-only"), Taps: c.Bool("taps"), NoFuse: c.Bool("no-fuse"), SkipPasses: c.StringSlice("skip-pass"),
		Quant: c.String("quant"), QuantGroup: c.Int("quant-group"), QuantHead: c.String("quant-lm-head"),
		Target: c.String("target"),
	}
	if opt.Quant == "" {
		for _, n := range []string{"quant-group", "quant-lm-head"} {
			if c.IsSet(n) {
				return buildConfig{}, fmt.Errorf("--%s applies with --quant only", n)
			}
		}
	} else if opt.QuantGroup < 32 || opt.QuantGroup%32 != 0 {
		return buildConfig{}, fmt.Errorf("--quant-group must be a positive multiple of 32, got %d", opt.QuantGroup)
	}
	runs := runNames(opt.NoFuse)
	for _, name := range opt.SkipPasses {
		if !slices.Contains(runs, name) {
			return buildConfig{}, fmt.Errorf("--skip-pass %q: not a pass this build runs (it runs %s; --no-fuse leaves out the fusions)", name, strings.Join(runs, ", "))
		}
	}
	if opt.DumpOnly != "" {
		if opt.DumpIR == "" {
			return buildConfig{}, fmt.Errorf("--dump-only needs --dump-ir")
		}
		if dumps := dumpNames(opt); !slices.Contains(dumps, opt.DumpOnly) {
			return buildConfig{}, fmt.Errorf("--dump-only %q: not a pass this build runs (it dumps %s; \"input\" is the graph before the passes)", opt.DumpOnly, strings.Join(dumps, ", "))
		}
	}
	return buildConfig{opt: opt, quiet: c.Bool("quiet")}, nil
}

// dumpNames lists the dumps a build with opt writes: the input graph, then
// the passes of the pipeline that --no-fuse and --skip-pass leave in.
func dumpNames(opt compiler.Options) []string {
	names := []string{"input"}
	for _, name := range runNames(opt.NoFuse) {
		if !slices.Contains(opt.SkipPasses, name) {
			names = append(names, name)
		}
	}
	return names
}

// runNames lists the passes of the pipeline a build runs: the whole one,
// or without the fusions under --no-fuse.
func runNames(noFuse bool) []string {
	if noFuse {
		return passes.Names(passes.Unfused())
	}
	return passes.Names(passes.Pipeline)
}

// inspectConfig is what `pioc inspect`'s flags say.
type inspectConfig struct {
	path         string
	plan, verify bool
}

// inspectOptions reads `pioc inspect`'s flags.
func inspectOptions(c *cli.Context) (inspectConfig, error) {
	if c.NArg() != 1 {
		return inspectConfig{}, fmt.Errorf("want one ENGINE argument")
	}
	return inspectConfig{path: c.Args().First(), plan: c.Bool("plan"), verify: c.Bool("verify")}, nil
}
