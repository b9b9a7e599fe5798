package passes

import "github.com/inference-pio/pio/ir"

// Fold simplifies what can be decided at build time: a reshape of a reshape
// becomes one reshape, a reshape to the same shape and a section covering
// the whole last dim disappear, a section of a section is one section, a
// concat of one arg is that arg, and a
// concat of a concat along the same axis is flattened (so a fused weight
// built from fused parts is still one build-time concat). Expressions over
// weights only are not evaluated here: Lower turns them into recipes that
// the compiler materialises when it writes the engine, so the runtime
// never computes them. Values left unused are removed here.
func Fold(g *ir.Graph) error {
	r := newRewriter(g)
	for _, v := range g.Values {
		args := make([]*ir.Value, len(v.Args))
		for i, a := range v.Args {
			args[i] = r.resolve(a)
		}
		switch v.Op {
		case ir.OpReshape:
			x := args[0]
			switch {
			case x.Shape.Equal(v.Shape):
				r.replace(v, x)
			case x.Op == ir.OpReshape:
				if root := r.resolve(x.Args[0]); root.Shape.Equal(v.Shape) {
					r.replace(v, root, x)
				} else {
					r.replace(v, r.add(ir.OpReshape, []*ir.Value{root}, v.Attrs...), x)
				}
			}
		case ir.OpSection:
			x := args[0]
			start, size := v.Attr().Int("start"), v.Attr().Int("size")
			if start == 0 && x.Shape.Equal(v.Shape) && x.DType == v.DType {
				r.replace(v, x)
				continue
			}
			if x.Op == ir.OpSection && x.DType == v.DType {
				xs := x.Attr().Int("start")
				r.replace(v, r.add(ir.OpSection, []*ir.Value{r.resolve(x.Args[0])}, ir.Int("start", xs+start), ir.Int("size", size)), x)
			}
		case ir.OpConcat:
			if len(args) == 1 && args[0].Shape.Equal(v.Shape) {
				r.replace(v, args[0])
				continue
			}
			axis := v.Attr().Int("axis")
			var flat, inner []*ir.Value
			for _, a := range args {
				if a.Op == ir.OpConcat && a.Attr().Int("axis") == axis {
					for _, b := range a.Args {
						flat = append(flat, r.resolve(b))
					}
					inner = append(inner, a)
				} else {
					flat = append(flat, a)
				}
			}
			if len(inner) > 0 {
				r.replace(v, r.add(ir.OpConcat, flat, v.Attrs...), inner...)
			}
		}
	}
	return r.finish()
}
