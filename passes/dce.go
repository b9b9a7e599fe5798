package passes

import "github.com/inference-pio/pio/ir"

// DeadCode removes every value that no graph output needs, keeping values
// with side effects (ops whose table entry is not Pure, such as attention,
// which writes the KV cache) and what they read. It renumbers the survivors
// densely and leaves caches in place: a cache no step uses is harmless and
// is pruned by lowering.
func DeadCode(g *ir.Graph) error {
	live := make([]bool, len(g.Values))
	var mark func(v *ir.Value)
	mark = func(v *ir.Value) {
		if live[v.ID] {
			return
		}
		live[v.ID] = true
		for _, a := range v.Args {
			mark(a)
		}
	}
	for _, o := range g.Outputs {
		mark(o.Value)
	}
	for _, v := range g.Values {
		if info, _ := v.Op.Info(); !info.Pure {
			mark(v)
		}
	}
	kept := g.Values[:0]
	for _, v := range g.Values {
		if live[v.ID] {
			kept = append(kept, v)
		}
	}
	for i := len(kept); i < len(g.Values); i++ {
		g.Values[i] = nil
	}
	g.Values = kept
	g.Renumber()
	return nil
}
