package passes

import "github.com/inference-pio/pio/ir"

// FuseAddNorm merges a residual add with the RMSNorm that reads it,
// rms_norm(add(a, b), w) -> add_rms_norm(a, b, w), when the sum has no other
// reader and is not an output (the final norm of a decoder). Sums the
// residual stream still needs are left to fuse-residual (the add goes into
// the producing GEMM's epilogue), and norms that feed GEMMs were already
// taken by fuse-norm-matmul (the norm goes into the GEMM's prologue).
func FuseAddNorm(g *ir.Graph) error {
	r := newRewriter(g)
	u := uses(g)
	for _, n := range g.Values {
		if n.Op != ir.OpRMSNorm {
			continue
		}
		a := n.Args[0]
		if a.Op != ir.OpAdd || !u.only(a, n) {
			continue
		}
		r.replace(n, r.add(ir.OpAddRMSNorm, []*ir.Value{a.Args[0], a.Args[1], n.Args[1]}, n.Attrs...), a)
	}
	return r.finish()
}
