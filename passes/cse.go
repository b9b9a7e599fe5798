package passes

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/ir"
)

// CSE (common-subexpression elimination) merges pure values that compute
// the same thing: same op, attributes, type and (already merged) args. The
// first one in graph order survives and every reader of a duplicate reads
// it. Inputs and weights are unique by name already (the verifier checks);
// ops with side effects (attention's cache write) are never merged. Values
// left unused are removed here; it leaves everything else to dce.
func CSE(g *ir.Graph) error {
	r := newRewriter(g)
	seen := map[string]*ir.Value{}
	var key strings.Builder
	for _, v := range g.Values {
		info, _ := v.Op.Info()
		if !info.Pure || v.Op == ir.OpInput || v.Op == ir.OpWeight {
			continue
		}
		key.Reset()
		fmt.Fprintf(&key, "%d %v%v %s", v.Op, v.DType, v.Shape, v.Attrs.Format())
		for _, a := range v.Args {
			fmt.Fprintf(&key, " %d", r.resolve(a).ID)
		}
		if prev, ok := seen[key.String()]; ok {
			r.replace(v, prev)
			continue
		}
		seen[key.String()] = v
	}
	return r.finish()
}
