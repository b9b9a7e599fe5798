package main

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/ir"
)

// optionParsers are the option parsers of the commands that take flags.
var optionParsers = map[string]func(*cli.Context) (any, error){
	"build":   func(c *cli.Context) (any, error) { return buildOptions(c) },
	"inspect": func(c *cli.Context) (any, error) { return inspectOptions(c) },
}

// parseOnly runs command name's parser on args without its action.
func parseOnly(name string, args ...string) (any, error) {
	return cliargs.Parse(newApp(), name, args, optionParsers[name])
}

// TestEveryPiocFlagArrives: each flag of each command, set to a value
// other than its default, sets the option the table names and no other;
// a flag without an entry fails.
func TestEveryPiocFlagArrives(t *testing.T) {
	b := func(c any) buildConfig { return c.(buildConfig) }
	type fc struct {
		set   []string
		field func(any) any
		want  any
		also  []string
	}
	table := map[string]map[string]fc{
		"build": {
			"output":        {[]string{"-o", "x.pio"}, func(c any) any { return b(c).opt.Output }, "x.pio", nil},
			"dtype":         {[]string{"--dtype", "f32"}, func(c any) any { return b(c).opt.DType }, ir.F32, nil},
			"kv-dtype":      {[]string{"--kv-dtype", "f32"}, func(c any) any { return b(c).opt.KVDType }, ir.F32, nil},
			"quant":         {[]string{"--quant", "int8"}, func(c any) any { return b(c).opt.Quant }, "int8", nil},
			"quant-group":   {[]string{"--quant-group", "64", "--quant", "int8"}, func(c any) any { return b(c).opt.QuantGroup }, 64, []string{"quant"}},
			"quant-lm-head": {[]string{"--quant-lm-head", "none", "--quant", "int8"}, func(c any) any { return b(c).opt.QuantHead }, "none", []string{"quant"}},
			"check":         {[]string{"--check"}, func(c any) any { return b(c).opt.Check }, true, nil},
			"dump-ir":       {[]string{"--dump-ir", "d"}, func(c any) any { return b(c).opt.DumpIR }, "d", nil},
			"dump-only":     {[]string{"--dump-only", "cse", "--dump-ir", "d"}, func(c any) any { return b(c).opt.DumpOnly }, "cse", []string{"dump-ir"}},
			"taps":          {[]string{"--taps"}, func(c any) any { return b(c).opt.Taps }, true, nil},
			"no-fuse":       {[]string{"--no-fuse"}, func(c any) any { return b(c).opt.NoFuse }, true, nil},
			"skip-pass":     {[]string{"--skip-pass", "cse", "--skip-pass", "fold"}, func(c any) any { return b(c).opt.SkipPasses }, []string{"cse", "fold"}, nil},
			"target":        {[]string{"--target", "cuda"}, func(c any) any { return b(c).opt.Target }, "cuda", nil},
			"quiet":         {[]string{"-q"}, func(c any) any { return b(c).quiet }, true, nil},
		},
		"inspect": {
			"plan":   {[]string{"--plan"}, func(c any) any { return c.(inspectConfig).plan }, true, nil},
			"verify": {[]string{"--verify"}, func(c any) any { return c.(inspectConfig).verify }, true, nil},
		},
	}
	for _, cmd := range newApp().Commands {
		if optionParsers[cmd.Name] == nil {
			if len(cmd.Flags) > 0 {
				t.Errorf("%s has flags and no option parser", cmd.Name)
			}
			continue
		}
		cases := table[cmd.Name]
		base, err := parseOnly(cmd.Name, "m")
		if err != nil {
			t.Fatalf("%s m: %v", cmd.Name, err)
		}
		for _, f := range cmd.Flags {
			name := f.Names()[0]
			c, ok := cases[name]
			if !ok {
				t.Errorf("%s --%s: no table entry: say which option it sets", cmd.Name, name)
				continue
			}
			got, err := parseOnly(cmd.Name, append(slices.Clone(c.set), "m")...)
			if err != nil {
				t.Errorf("%s %v: %v", cmd.Name, c.set, err)
				continue
			}
			if reflect.DeepEqual(c.field(base), c.want) {
				t.Errorf("%s --%s: the default already is %v", cmd.Name, name, c.want)
			}
			if v := c.field(got); !reflect.DeepEqual(v, c.want) {
				t.Errorf("%s %v: option is %#v, want %#v", cmd.Name, c.set, v, c.want)
			}
			for other, oc := range cases {
				if other != name && !slices.Contains(c.also, other) && !reflect.DeepEqual(oc.field(got), oc.field(base)) {
					t.Errorf("%s %v also changed --%s's option", cmd.Name, c.set, other)
				}
			}
		}
		if len(cases) != len(cmd.Flags) {
			t.Errorf("%s: %d table entries for %d flags", cmd.Name, len(cases), len(cmd.Flags))
		}
	}
}

// Flags that would change nothing, and values out of range, are errors
// naming the flag.
func TestPiocFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--quant-group", "64"}, "--quant-group applies with --quant only"},
		{[]string{"--quant-lm-head", "int8"}, "--quant-lm-head applies with --quant only"},
		{[]string{"--quant", "int8", "--quant-group", "0"}, "--quant-group must be a positive multiple of 32, got 0"},
		{[]string{"--quant", "int8", "--quant-group", "48"}, "--quant-group must be a positive multiple of 32"},
		{[]string{"--dump-only", "cse"}, "--dump-only needs --dump-ir"},
		{[]string{"--dump-ir", "d", "--dump-only", "nope"}, `--dump-only "nope": not a pass this build runs (it dumps input, cse, fold, fuse-moe-routing, fuse-sibling-matmuls, `},
		{[]string{"--dump-ir", "d", "--dump-only", "fuse-sibling-matmuls", "--no-fuse"}, `--dump-only "fuse-sibling-matmuls": not a pass this build runs (it dumps input, cse, fold, refold, dce;`},
		{[]string{"--dump-ir", "d", "--dump-only", "cse", "--skip-pass", "cse"}, `--dump-only "cse": not a pass this build runs (it dumps input, fold, `},
		{[]string{"--skip-pass", "fuse-qkv"}, `--skip-pass "fuse-qkv": not a pass this build runs (it runs cse, fold, fuse-moe-routing, fuse-sibling-matmuls, `},
		{[]string{"--no-fuse", "--skip-pass", "fuse-sibling-matmuls"}, `--skip-pass "fuse-sibling-matmuls": not a pass this build runs (it runs cse, fold, refold, dce;`},
		{[]string{"--dtype", "f16"}, "--dtype must be f32 or bf16"},
		{[]string{"--kv-dtype", "f16"}, "--kv-dtype must be auto, f32 or bf16"},
	} {
		_, err := parseOnly("build", append(slices.Clone(c.args), "m")...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("build %v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
	if _, err := parseOnly("build", "--dump-ir", "d", "--dump-only", "input", "m"); err != nil {
		t.Errorf("--dump-only input: %v", err)
	}
}
