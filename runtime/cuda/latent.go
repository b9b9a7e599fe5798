package cuda

import "github.com/inference-pio/pio/ir"

// MLA's latent cache and the MoE steps' scratch (codegen/cuda's mla.go and
// moe.go).
//
// A latent cache (ir.CacheLatent) is paged like a KV cache, with two entry
// pools per position: c_kv [rank] (PCacheK) and k_rope [ropeDim] (PCacheV);
// the generic pool allocation of allocate serves it, one entry pool each.
// The MoE steps keep their routing, pair lists and activations in the
// workspace, Launch.Workspace floats per token of the step, so the
// workspace also covers MaxTokens tokens.

// pagedCache reports whether the backend allocates c as a paged cache of
// two entry pools: a KV cache, or MLA's latent cache.
func pagedCache(c ir.CacheSpec) bool {
	return (c.Kind == ir.CacheKV || c.Kind == ir.CacheLatent) && len(c.Entries) == 2
}

// workspaceFloats is the workspace size for launches asking ws floats per
// sequence and decode split (attention) or per token (MoE).
func workspaceFloats(ws int64, maxSeqs, splits, maxTokens int) uint64 {
	return uint64(ws) * uint64(max(maxSeqs*splits, maxTokens))
}
