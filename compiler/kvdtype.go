package compiler

import (
	"fmt"

	"github.com/inference-pio/pio/ir"
)

// KV cache storage. Models declare their caches in f32, the dtype attention
// computes in; the build retypes the paged caches (KV and MLA's latent
// cache) to the storage dtype chosen here. Compute stays f32: kernels widen
// cached values on read and round to nearest even on write. State caches
// (DeltaNet's recurrent and conv state) are overwritten every step and
// stay f32.
//
// The default, auto, follows the weights: an f32 engine keeps an f32 cache
// (so that it still matches transformers' f32 within 1e-4), a bf16 or
// quantized engine stores K/V in bf16, as vLLM and TensorRT-LLM do in the
// model dtype, halving the cache's memory and decode attention's reads.

// ParseKVDType reads a --kv-dtype value: "auto" (or "") gives ir.DInvalid,
// which Build resolves with AutoKVDType; "f32" and "bf16" name the dtype.
func ParseKVDType(s string) (ir.DType, error) {
	switch s {
	case "", "auto":
		return ir.DInvalid, nil
	case "f32":
		return ir.F32, nil
	case "bf16":
		return ir.BF16, nil
	}
	return ir.DInvalid, fmt.Errorf("--kv-dtype must be auto, f32 or bf16, got %q", s)
}

// AutoKVDType is the KV cache dtype auto picks for an engine whose weights
// are stored as weights (f32 or bf16), quantized when quant is set: f32 for
// an unquantized f32 engine, bf16 otherwise.
func AutoKVDType(weights ir.DType, quant string) ir.DType {
	if weights == ir.F32 && quant == "" {
		return ir.F32
	}
	return ir.BF16
}

// resolveKVDType fills opt.KVDType when it is auto and checks it.
func resolveKVDType(opt *Options) error {
	if opt.KVDType == ir.DInvalid {
		opt.KVDType = AutoKVDType(opt.DType, opt.Quant)
	}
	if opt.KVDType != ir.F32 && opt.KVDType != ir.BF16 {
		return fmt.Errorf("KV cache dtype %v is not supported (use f32 or bf16)", opt.KVDType)
	}
	return nil
}

// setKVDType stores every paged cache of the graphs as dt.
func setKVDType(graphs []*ir.Graph, dt ir.DType) {
	for _, g := range graphs {
		for i := range g.Caches {
			if g.Caches[i].Kind.Paged() {
				g.Caches[i].DType = dt
			}
		}
	}
}
