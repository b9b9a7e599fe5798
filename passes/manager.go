package passes

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/inference-pio/pio/ir"
)

// Pass is one named graph rewrite.
type Pass struct {
	Name string
	Run  func(*ir.Graph) error
	Doc  string
}

// Pipeline is the ordered list of passes every build runs.
var Pipeline = []Pass{
	{Name: "dce", Run: DeadCode, Doc: "remove values no output or side effect needs"},
}

// Constraint says pass Before must run before pass After, and why.
type Constraint struct {
	Before, After string
	Why           string
}

// Order lists the ordering constraints on Pipeline. It is empty while the
// pipeline has one pass; fusion passes add theirs (for example, DCE runs
// last so that values a fusion leaves dead are removed).
var Order = []Constraint{}

// Options control Run.
type Options struct {
	// Check runs the verifier before the first pass and after every pass.
	Check bool
	// DumpDir, when set, receives the graph's text after each pass as
	// NN-<pass>.ir (and 00-input.ir).
	DumpDir string
	// DumpOnly limits dumps to one named pass.
	DumpOnly string
}

// Run applies Pipeline to g in order.
func Run(g *ir.Graph, opt Options) error {
	return RunPasses(g, Pipeline, opt)
}

// RunPasses applies a list of passes.
func RunPasses(g *ir.Graph, list []Pass, opt Options) error {
	if opt.Check {
		if err := ir.Verify(g); err != nil {
			return fmt.Errorf("before the first pass: %w", err)
		}
	}
	if err := dump(g, opt, 0, "input"); err != nil {
		return err
	}
	for i, p := range list {
		if err := p.Run(g); err != nil {
			return fmt.Errorf("pass %q: %w", p.Name, err)
		}
		if opt.Check {
			if err := ir.Verify(g); err != nil {
				return fmt.Errorf("after pass %q: %w", p.Name, err)
			}
		}
		if err := dump(g, opt, i+1, p.Name); err != nil {
			return err
		}
	}
	return nil
}

func dump(g *ir.Graph, opt Options, i int, name string) error {
	if opt.DumpDir == "" || (opt.DumpOnly != "" && opt.DumpOnly != name) {
		return nil
	}
	if err := os.MkdirAll(opt.DumpDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(opt.DumpDir, fmt.Sprintf("%02d-%s.ir", i, name)), []byte(ir.Print(g)), 0o644)
}

// CheckOrder reports the first constraint the list violates.
func CheckOrder(list []Pass, order []Constraint) error {
	at := map[string]int{}
	for i, p := range list {
		if _, dup := at[p.Name]; dup {
			return fmt.Errorf("pass %q appears twice", p.Name)
		}
		at[p.Name] = i
	}
	for _, c := range order {
		b, okb := at[c.Before]
		a, oka := at[c.After]
		if !okb || !oka {
			return fmt.Errorf("constraint %s < %s names a pass not in the pipeline", c.Before, c.After)
		}
		if b >= a {
			return fmt.Errorf("pass %q must run before %q: %s", c.Before, c.After, c.Why)
		}
	}
	return nil
}
