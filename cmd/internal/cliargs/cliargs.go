// Package cliargs makes urfave/cli v2 accept flags after positional
// arguments, as in `pioc build glm-4.7-flash -o engine.pio`. The library
// stops parsing flags at the first positional argument and would silently
// ignore `-o`; Reorder moves each subcommand's flags (with their values)
// ahead of its positionals before the library sees them.
package cliargs

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Reorder rewrites args (os.Args) so that, for the subcommand named in
// args, every flag precedes every positional argument. Arguments after "--"
// stay positional. An argument that looks like a flag but is not one of the
// command's flags is an error, rather than being taken as a positional.
func Reorder(app *cli.App, args []string) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		i++ // global flags (help, version)
	}
	if i >= len(args) {
		return args, nil
	}
	cmd := app.Command(args[i])
	if cmd == nil {
		return args, nil
	}
	takesValue := map[string]bool{}
	known := map[string]bool{"h": true, "help": true}
	for _, f := range cmd.Flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			known[n] = true
			takesValue[n] = !isBool
		}
	}
	var flags, pos []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		if a == "--" {
			pos = append(pos, rest[j+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		name, _, hasValue := strings.Cut(name, "=")
		if !known[name] {
			return nil, fmt.Errorf("%s: unknown flag %s (see `%s %s --help`)", cmd.Name, a, app.Name, cmd.Name)
		}
		flags = append(flags, a)
		if takesValue[name] && !hasValue {
			if j+1 >= len(rest) {
				return nil, fmt.Errorf("%s: flag %s needs a value", cmd.Name, a)
			}
			j++
			flags = append(flags, rest[j])
		}
	}
	out := append(append([]string(nil), args[:i+1]...), flags...)
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out, nil
}

// Main runs app on os.Args with flags reordered, printing any error as
// "<app>: <error>" and exiting 1.
func Main(app *cli.App) {
	args, err := Reorder(app, os.Args)
	if err == nil {
		err = app.Run(args)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		os.Exit(1)
	}
}

// Parse runs `app.Name name args...` (flags reordered as Main does) with
// the command's action replaced by parse, and returns what parse returned:
// a command's options read from its flags without running it, for tests
// of option parsing. The app's output is discarded.
func Parse[T any](app *cli.App, name string, args []string, parse func(*cli.Context) (T, error)) (T, error) {
	var got T
	var perr error
	ran := false
	cmd := app.Command(name)
	if cmd == nil {
		return got, fmt.Errorf("%s: no command %q", app.Name, name)
	}
	cmd.Action = func(c *cli.Context) error {
		ran = true
		got, perr = parse(c)
		return nil
	}
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	full, err := Reorder(app, append([]string{app.Name, name}, args...))
	if err == nil {
		err = app.Run(full)
	}
	if err == nil && !ran {
		err = fmt.Errorf("%s %s did not run", app.Name, name)
	}
	if err != nil {
		return got, err
	}
	return got, perr
}
