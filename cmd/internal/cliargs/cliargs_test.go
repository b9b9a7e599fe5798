package cliargs

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func testApp(got *[]string, out *string, check *bool) *cli.App {
	return &cli.App{
		Name: "pioc",
		Commands: []*cli.Command{{
			Name: "build",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Destination: out},
				&cli.BoolFlag{Name: "check", Destination: check},
			},
			Action: func(c *cli.Context) error { *got = c.Args().Slice(); return nil },
		}},
	}
}

func TestReorderFlagsAfterPositional(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		pos   []string
		out   string
		check bool
	}{
		{[]string{"pioc", "build", "glm-4.7-flash", "-o", "engine.pio"}, []string{"glm-4.7-flash"}, "engine.pio", false},
		{[]string{"pioc", "build", "-o", "e.pio", "m"}, []string{"m"}, "e.pio", false},
		{[]string{"pioc", "build", "m", "--check", "--output=x.pio"}, []string{"m"}, "x.pio", true},
		{[]string{"pioc", "build", "m", "--", "-o"}, []string{"m", "-o"}, "", false},
	} {
		var got []string
		var out string
		var check bool
		app := testApp(&got, &out, &check)
		args, err := Reorder(app, tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if err := app.Run(args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if diff := cmp.Diff(got, tc.pos); diff != "" || out != tc.out || check != tc.check {
			t.Errorf("%v: positionals (-got +want)\n%s out=%q check=%v", tc.args, diff, out, check)
		}
	}
}

func TestReorderRejectsUnknownAndDangling(t *testing.T) {
	var got []string
	var out string
	var check bool
	app := testApp(&got, &out, &check)
	for _, args := range [][]string{
		{"pioc", "build", "m", "-x"},
		{"pioc", "build", "m", "-o"},
	} {
		if _, err := Reorder(app, args); err == nil || !strings.Contains(err.Error(), "build") {
			t.Errorf("%v: want an error naming the command, got %v", args, err)
		}
	}
}

// Parse hands the parser the context of the command line, flags after
// the positional too, and returns its result; the action does not run.
func TestParse(t *testing.T) {
	var got []string
	var out string
	var check bool
	app := testApp(&got, &out, &check)
	type opts struct {
		out   string
		check bool
		args  []string
	}
	o, err := Parse(app, "build", []string{"m", "-o", "x.pio", "--check"}, func(c *cli.Context) (opts, error) {
		return opts{c.String("output"), c.Bool("check"), c.Args().Slice()}, nil
	})
	if err != nil || o.out != "x.pio" || !o.check || !cmp.Equal(o.args, []string{"m"}) || got != nil {
		t.Errorf("Parse: %+v, %v; action ran: %v", o, err, got != nil)
	}
	if _, err := Parse(app, "build", []string{"--nope"}, func(c *cli.Context) (opts, error) { return opts{}, nil }); err == nil {
		t.Error("unknown flag: want an error")
	}
	if _, err := Parse(app, "missing", nil, func(c *cli.Context) (opts, error) { return opts{}, nil }); err == nil {
		t.Error("unknown command: want an error")
	}
}
