package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// Print returns the stable text form of g (see the package documentation),
// one item per line: the caches in index order, the values in graph order,
// then the outputs. Values are labelled v<ID> by their current IDs, so a dump
// matches the verifier's messages; Parse numbers values by position and
// resolves each label to the value printed with it. Print never fails: an
// invalid graph prints as far as it can, with "<nil>" for missing values.
func Print(g *Graph) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "graph %s {\n", strconv.Quote(g.Name))
	for i, c := range g.Caches {
		fmt.Fprintf(&sb, "  cache %d = %s\n", i, formatCache(c))
	}
	for _, v := range g.Values {
		sb.WriteString("  ")
		if v == nil {
			sb.WriteString("<nil>\n")
			continue
		}
		sb.WriteString(label(v))
		sb.WriteString(" = ")
		sb.WriteString(v.Op.String())
		sb.WriteByte('(')
		for i, a := range v.Args {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(label(a))
		}
		sb.WriteByte(')')
		if len(v.Attrs) > 0 {
			sb.WriteByte(' ')
			sb.WriteString(v.Attrs.Format())
		}
		fmt.Fprintf(&sb, " : %v%v\n", v.DType, v.Shape)
	}
	for _, o := range g.Outputs {
		fmt.Fprintf(&sb, "  output %s = %s\n", strconv.Quote(o.Name), label(o.Value))
	}
	sb.WriteString("}\n")
	return sb.String()
}

// String returns Print(g).
func (g *Graph) String() string { return Print(g) }

func label(v *Value) string {
	if v == nil {
		return "<nil>"
	}
	return v.String()
}

// formatCache prints a cache spec as `kv layer=0 f32 [[2, 32], [2, 32]]`.
func formatCache(c CacheSpec) string {
	entries := make([]string, len(c.Entries))
	for i, e := range c.Entries {
		entries[i] = e.String()
	}
	return fmt.Sprintf("%v layer=%d %v [%s]", c.Kind, c.Layer, c.DType, strings.Join(entries, ", "))
}

// PrintPlan returns a readable listing of a plan for `pioc inspect`: the
// arena size, inputs, weights, caches, buffers with their offsets (or the
// buffer they view), the steps in order and the outputs. Offsets and sizes
// read as perT*maxT + fixed bytes. There is no parser for it.
func PrintPlan(p *Plan) string {
	var sb strings.Builder
	sb.WriteString("plan {\n")
	fmt.Fprintf(&sb, "  arena %s bytes\n", formatSplit(p.ArenaPerT, p.ArenaFixed))
	section := func(name string, n int) {
		if n > 0 {
			fmt.Fprintf(&sb, "  %s:\n", name)
		}
	}
	section("inputs", len(p.Inputs))
	for i, t := range p.Inputs {
		fmt.Fprintf(&sb, "    in%d %s : %v%v\n", i, strconv.Quote(t.Name), t.DType, t.Shape)
	}
	section("weights", len(p.Weights))
	for i, t := range p.Weights {
		fmt.Fprintf(&sb, "    w%d %s : %v%v\n", i, strconv.Quote(t.Name), t.DType, t.Shape)
	}
	section("caches", len(p.Caches))
	for i, c := range p.Caches {
		fmt.Fprintf(&sb, "    cache %d = %s\n", i, formatCache(c))
	}
	section("buffers", len(p.Buffers))
	for i, b := range p.Buffers {
		fmt.Fprintf(&sb, "    b%d : %v%v", i, b.DType, b.Shape)
		if b.View >= 0 {
			fmt.Fprintf(&sb, " = view b%d\n", b.View)
			continue
		}
		pt, ft, _ := b.Shape.Split()
		sz := int64(b.DType.Size())
		fmt.Fprintf(&sb, " @ %s size %s\n", formatSplit(b.OffsetPerT, b.OffsetFixed), formatSplit(pt*sz, ft*sz))
	}
	section("steps", len(p.Steps))
	for _, s := range p.Steps {
		args := make([]string, len(s.Args))
		for i, r := range s.Args {
			args[i] = r.String()
		}
		fmt.Fprintf(&sb, "    b%d = %v(%s)", s.Out, s.Op, strings.Join(args, ", "))
		if len(s.Attrs) > 0 {
			sb.WriteString(" " + s.Attrs.Format())
		}
		sb.WriteByte('\n')
	}
	section("outputs", len(p.Outputs))
	for _, o := range p.Outputs {
		fmt.Fprintf(&sb, "    %s = b%d\n", strconv.Quote(o.Name), o.Buffer)
	}
	sb.WriteString("}\n")
	return sb.String()
}

// formatSplit prints perT·maxT + fixed as "256*maxT + 64", dropping a zero
// part ("64", "256*maxT").
func formatSplit(perT, fixed int64) string {
	switch {
	case perT == 0:
		return strconv.FormatInt(fixed, 10)
	case fixed == 0:
		return fmt.Sprintf("%d*maxT", perT)
	}
	return fmt.Sprintf("%d*maxT + %d", perT, fixed)
}
