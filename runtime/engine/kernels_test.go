package engine

import (
	"reflect"
	"testing"

	"github.com/inference-pio/pio/kernel/abi"
)

func TestKernelsRoundTrip(t *testing.T) {
	p := tinyPlan()
	meta := testMeta(p)
	meta.Kernels = testKernels()
	for _, opt := range []WriteOptions{{}, {UncompressedMetadata: true}} {
		path := build(t, meta, specsFor(p), opt)
		e, err := Open(path, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(e.Meta.Kernels, meta.Kernels) {
			t.Errorf("kernels differ after a round trip:\n got %+v\nwant %+v", e.Meta.Kernels, meta.Kernels)
		}
		e.Close()
	}
	// Kernels without a candidates kernel (engines written before it had
	// a field) read back with none.
	meta.Kernels.Candidates = ""
	e, err := Open(build(t, meta, specsFor(p), WriteOptions{}), OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e.Meta.Kernels, meta.Kernels) {
		t.Errorf("kernels without candidates differ after a round trip:\n got %+v\nwant %+v", e.Meta.Kernels, meta.Kernels)
	}
	e.Close()
	// A CPU-only engine has none.
	meta.Kernels = nil
	e, err = Open(build(t, meta, specsFor(p), WriteOptions{}), OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Meta.Kernels != nil {
		t.Errorf("CPU engine has kernels %+v", e.Meta.Kernels)
	}
}

// testKernels is a small kernels section with every field set.
func testKernels() *Kernels {
	return &Kernels{
		Source:      []byte("extern \"C\" __global__ void k() {}"),
		Images:      []abi.Image{{Arch: "sm_80", Data: []byte{1, 2, 3}}, {Arch: "compute_90", Data: []byte(".version 9.0\x00")}},
		TileTokens:  8,
		SplitSize:   256,
		Argmax:      "argmax_0",
		ArgmaxVocab: 8,
		Compiler:    "nvcc 13.0",
		Candidates:  "candidates_0",
		Launches: []abi.Launch{{
			Step: 0, Kernel: "k", Params: []abi.Param{{Kind: abi.PArg}, {Kind: abi.POut, Index: 3}}, Block: 128, Mode: abi.Prefill,
			Grid:    [3]abi.Expr{{T: 1, Div: 1}, {Fixed: 4, Div: 1}, {Splits: 1, Div: 1}},
			Rows:    abi.Expr{S: 1},
			MinRows: 17, MaxRows: 0, Workspace: 130,
		}},
	}
}
