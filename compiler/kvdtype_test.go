package compiler

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
)

// The KV dtype reaches the plan: auto follows the weights (f32 for an f32
// engine, bf16 for bf16 or quantized ones), an explicit dtype wins, the
// paged caches (kv, MLA's latent) take it and state caches stay f32.
func TestKVDType(t *testing.T) {
	for _, c := range []struct {
		model  string
		dt, kv ir.DType
		quant  string
		want   ir.DType
	}{
		{"qwen3-a", ir.F32, ir.DInvalid, "", ir.F32},
		{"qwen3-a", ir.BF16, ir.DInvalid, "", ir.BF16},
		{"qwen3-a", ir.F32, ir.DInvalid, "int8", ir.BF16},
		{"qwen3-a", ir.BF16, ir.F32, "", ir.F32},
		{"qwen3-a", ir.F32, ir.BF16, "", ir.BF16},
		{"glm4moelite", ir.BF16, ir.DInvalid, "", ir.BF16},
		{"qwen3next/dense", ir.BF16, ir.DInvalid, "", ir.BF16},
	} {
		t.Run(fmt.Sprintf("%s/%v/%v/%s", c.model, c.dt, c.kv, c.quant), func(t *testing.T) {
			res, err := Build(Options{Source: tinyDir(t, c.model), Output: filepath.Join(t.TempDir(), "e.pio"), DType: c.dt, KVDType: c.kv, Quant: c.quant})
			if err != nil {
				t.Fatal(err)
			}
			paged := 0
			for _, cs := range res.Plan.Caches {
				want := c.want
				if !cs.Kind.Paged() {
					want = ir.F32
				} else {
					paged++
				}
				if cs.DType != want {
					t.Errorf("%v cache (layer %d): %v, want %v", cs.Kind, cs.Layer, cs.DType, want)
				}
			}
			if paged == 0 {
				t.Fatalf("no paged cache in the plan: %v", res.Plan.Caches)
			}
		})
	}
}

func TestKVDTypeErrors(t *testing.T) {
	for _, s := range []string{"bad", "f16", "BF16"} {
		if _, err := ParseKVDType(s); err == nil || !strings.Contains(err.Error(), "--kv-dtype must be auto, f32 or bf16") {
			t.Errorf("ParseKVDType(%q): %v", s, err)
		}
	}
	for s, want := range map[string]ir.DType{"": ir.DInvalid, "auto": ir.DInvalid, "f32": ir.F32, "bf16": ir.BF16} {
		if got, err := ParseKVDType(s); err != nil || got != want {
			t.Errorf("ParseKVDType(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	_, err := Build(Options{Source: tinyDir(t, "qwen3-a"), Output: filepath.Join(t.TempDir(), "e.pio"), KVDType: ir.F16})
	if err == nil || !strings.Contains(err.Error(), "KV cache dtype f16") {
		t.Errorf("f16 KV cache: %v", err)
	}
}
