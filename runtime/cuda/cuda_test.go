package cuda

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	cg "github.com/inference-pio/pio/codegen/cuda"
	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/models"
	_ "github.com/inference-pio/pio/models/all"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/engine"
)

// Every driver function is bound exactly once, versioned entry points by
// their _v2 names, and no name repeats.
func TestDriverSymbols(t *testing.T) {
	var d driver
	bound := map[uintptr]string{}
	names := map[string]bool{}
	for _, s := range driverSymbols {
		if names[s.name] {
			t.Errorf("symbol %s listed twice", s.name)
		}
		names[s.name] = true
		p := reflect.ValueOf(s.fn(&d))
		if p.Kind() != reflect.Pointer || p.Elem().Kind() != reflect.Func {
			t.Errorf("%s: binds %v, not a function field", s.name, p.Type())
			continue
		}
		if prev, dup := bound[p.Pointer()]; dup {
			t.Errorf("%s and %s bind the same field", s.name, prev)
		}
		bound[p.Pointer()] = s.name
	}
	typ := reflect.TypeOf(d)
	fields := 0
	for i := 0; i < typ.NumField(); i++ {
		if typ.Field(i).Type.Kind() == reflect.Func {
			fields++
		}
	}
	if fields != len(bound) {
		t.Errorf("driver has %d function fields, the table binds %d", fields, len(bound))
	}
	for _, v2 := range []string{"cuMemAlloc", "cuMemFree", "cuMemcpyHtoD", "cuMemcpyDtoH", "cuMemcpyHtoDAsync", "cuMemsetD8", "cuMemGetInfo",
		"cuStreamDestroy", "cuDevicePrimaryCtxRelease", "cuStreamBeginCapture", "cuDeviceTotalMem"} {
		if !names[v2+"_v2"] || names[v2] {
			t.Errorf("%s must be bound as %s_v2", v2, v2)
		}
	}
}

// Without libcuda, New fails with ErrNoDriver after checking the engine.
func TestNewWithoutDriver(t *testing.T) {
	p, k, ws := tinyEngine(t)
	_, err := New(p, ws, k, Options{})
	if err == nil {
		t.Skip("skipping: a CUDA driver is present (the GPU tests cover New)")
	}
	if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "libcuda") {
		t.Errorf("got %v, want ErrNoDriver", err)
	}
	if _, err := New(p, ws, nil, Options{}); !errors.Is(err, ErrNoKernels) {
		t.Errorf("no kernels: %v", err)
	}
}

// tinyEngine is the plan, kernels section (with fake images) and zero
// weights of qwen3-a in bf16.
func tinyEngine(t *testing.T) (*ir.Plan, *engine.Kernels, []Weight) {
	t.Helper()
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := hf.OpenCheckpoint(filepath.Join(root, "qwen3-a"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	m, err := models.New(ck.Config)
	if err != nil {
		t.Fatal(err)
	}
	g, err := m.Build(models.BuildOptions{WeightDType: ir.BF16, Has: func(n string) bool { _, ok := ck.Tensor(n); return ok }})
	if err != nil {
		t.Fatal(err)
	}
	if err := passes.Run(g, passes.Options{}); err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := cg.Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	k := compiler.KernelsOf(mod, []abi.Image{{Arch: "sm_80", Data: []byte("cubin")}}, "test")
	ws := make([]Weight, len(p.Weights))
	for i, w := range p.Weights {
		n, _ := w.Shape.Elems(0, 0)
		shape := make([]int64, len(w.Shape))
		for j, d := range w.Shape {
			shape[j] = int64(d)
		}
		ws[i] = Weight{DType: w.DType, Shape: shape, Data: make([]byte, n*int64(w.DType.Size()))}
	}
	return p, k, ws
}

func TestPrepare(t *testing.T) {
	p, k, ws := tinyEngine(t)
	ls, err := prepare(p, ws, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != len(k.Launches) {
		t.Errorf("%d launches, want %d", len(ls), len(k.Launches))
	}
	bad := func(name, want string, edit func(k *engine.Kernels, ws []Weight) []Weight) {
		_, k2, ws2 := tinyEngine(t)
		ws2 = edit(k2, ws2)
		if _, err := prepare(p, ws2, k2); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", name, err, want)
		}
	}
	bad("step without launch", "has no kernel launch", func(k *engine.Kernels, ws []Weight) []Weight {
		var keep []abi.Launch
		for _, l := range k.Launches {
			if l.Step != 2 {
				keep = append(keep, l)
			}
		}
		k.Launches = keep
		return ws
	})
	bad("step out of range", "outside the plan", func(k *engine.Kernels, ws []Weight) []Weight {
		k.Launches[0].Step = 999
		return ws
	})
	bad("arg out of range", "parameter 0 is arg 7", func(k *engine.Kernels, ws []Weight) []Weight {
		k.Launches[0].Params[0] = abi.Param{Kind: abi.PArg, Index: 7}
		return ws
	})
	bad("unknown param", "unknown kind 99", func(k *engine.Kernels, ws []Weight) []Weight {
		k.Launches[0].Params[0] = abi.Param{Kind: 99}
		return ws
	})
	bad("cache out of range", "names cache 9", func(k *engine.Kernels, ws []Weight) []Weight {
		for i, l := range k.Launches {
			for j, c := range l.Params {
				if c.Kind == abi.PCacheK {
					k.Launches[i].Params[j] = abi.Param{Kind: abi.PCacheK, Index: 9}
					return ws
				}
			}
		}
		return ws
	})
	bad("no images", "no images", func(k *engine.Kernels, ws []Weight) []Weight {
		k.Images = nil
		return ws
	})
	bad("short weight", "bytes, plan wants", func(k *engine.Kernels, ws []Weight) []Weight {
		ws[1].Data = ws[1].Data[:2]
		return ws
	})
}

// pack resolves every parameter kind to its address or value.
func TestPack(t *testing.T) {
	p, k, _ := tinyEngine(t)
	a := &addrs{
		buffers: make([]uint64, len(p.Buffers)), weights: make([]uint64, len(p.Weights)), inputs: []uint64{0x7000, 0x7100, 0x7200},
		cacheK: []uint64{0xa000, 0xa100, 0xa200}, cacheV: []uint64{0xb000, 0xb100, 0xb200},
		positions: 0xc000, seqOfToken: 0xc100, blockTables: 0xc200, tiles: 0xc300, workspace: 0xd000, maxBlocks: 33, blockSize: 16,
	}
	for i := range a.buffers {
		a.buffers[i] = 0x1000_0000 + uint64(i)*0x100
	}
	for i := range a.weights {
		a.weights[i] = 0x2000_0000 + uint64(i)*0x100
	}
	dyn := dynamic{t: 5, s: 2, splits: 3}
	seen := map[abi.ParamKind]bool{}
	for _, l := range k.Launches {
		s := p.Steps[l.Step]
		vals := make([]uint64, len(l.Params))
		pack(&l, s, a, dyn, vals)
		for i, prm := range l.Params {
			seen[prm.Kind] = true
			var want uint64
			switch prm.Kind {
			case abi.PArg:
				r := s.Args[prm.Index]
				want = map[ir.RefKind][]uint64{ir.RefBuffer: a.buffers, ir.RefWeight: a.weights, ir.RefInput: a.inputs}[r.Kind][r.Index]
			case abi.POut:
				want = a.buffers[s.Out]
			case abi.PT:
				want = 5
			case abi.PS:
				want = 2
			case abi.PSplits:
				want = 3
			case abi.PCacheK:
				want = a.cacheK[prm.Index]
			case abi.PCacheV:
				want = a.cacheV[prm.Index]
			case abi.PPositions:
				want = 0xc000
			case abi.PSeqOfToken:
				want = 0xc100
			case abi.PBlockTables:
				want = 0xc200
			case abi.PTiles:
				want = 0xc300
			case abi.PWorkspace:
				want = 0xd000
			case abi.PMaxBlocks:
				want = 33
			case abi.PBlockSize:
				want = 16
			}
			if vals[i] != want {
				t.Errorf("%s param %d (%v): %#x, want %#x", l.Kernel, i, prm, vals[i], want)
			}
			if !prm.IsPointer() && unsafe.Sizeof(int32(0)) != 4 {
				t.Fatal("int32 is not 4 bytes")
			}
		}
	}
	for _, kind := range []abi.ParamKind{abi.PArg, abi.POut, abi.PT, abi.PS, abi.PSplits, abi.PCacheK, abi.PCacheV, abi.PPositions, abi.PSeqOfToken, abi.PBlockTables, abi.PTiles, abi.PWorkspace, abi.PMaxBlocks, abi.PBlockSize} {
		if !seen[kind] {
			t.Errorf("no launch of qwen3-a uses parameter kind %v", abi.Param{Kind: kind})
		}
	}
}

func TestGrid(t *testing.T) {
	l := abi.Launch{Grid: [3]abi.Expr{{T: 1}, {Fixed: 4}, {Splits: 1}}}
	if g, ok := grid(&l, 7, 1, 0, 3); !ok || g != [3]uint32{7, 4, 3} {
		t.Errorf("grid %v %v", g, ok)
	}
	l.Grid[0] = abi.Expr{Tiles: 1}
	if _, ok := grid(&l, 7, 1, 0, 3); ok {
		t.Error("an empty grid is launched")
	}
	l.Grid[1] = abi.Expr{Fixed: 70000}
	if _, ok := grid(&l, 7, 1, 2, 3); ok {
		t.Error("grid y above 65535 accepted")
	}
}

func TestLayoutFill(t *testing.T) {
	l := layout{maxT: 16, maxSeqs: 3, maxBlocks: 4}
	m := make([]int32, l.size())
	for i := range m {
		m[i] = -99
	}
	// Sequence 0: 5 prefill tokens at 0..4; sequence 1: one decode token at 9.
	b := &runtime.Batch{
		Tokens:     []int32{10, 11, 12, 13, 14, 15},
		Positions:  []int32{0, 1, 2, 3, 4, 9},
		SeqOfToken: []int32{0, 0, 0, 0, 0, 1},
		Seqs:       []runtime.SeqView{{Blocks: []int32{3, 1}}, {Blocks: []int32{0, 2, 5}}},
		LogitRows:  []int32{4, 5},
	}
	tiles := l.fill(m, b, 2)
	if tiles != 4 {
		t.Fatalf("%d tiles, want 4", tiles)
	}
	wantTiles := []int32{0, 0, 2, 0, 2, 2, 0, 4, 1, 1, 5, 1}
	if got := m[l.tiles() : l.tiles()+12]; !reflect.DeepEqual(got, wantTiles) {
		t.Errorf("tiles %v, want %v", got, wantTiles)
	}
	if got := m[l.blockTables() : l.blockTables()+8]; !reflect.DeepEqual(got, []int32{3, 1, 0, 0, 0, 2, 5, 0}) {
		t.Errorf("block tables %v", got)
	}
	if got := m[l.positions() : l.positions()+6]; !reflect.DeepEqual(got, b.Positions) {
		t.Errorf("positions %v", got)
	}
	if got := m[l.logitRows() : l.logitRows()+2]; !reflect.DeepEqual(got, b.LogitRows) {
		t.Errorf("logit rows %v", got)
	}
}

func TestCheckBatch(t *testing.T) {
	good := func() *runtime.Batch {
		return &runtime.Batch{
			Tokens: []int32{1, 2, 3}, Positions: []int32{0, 1, 5}, SeqOfToken: []int32{0, 0, 1},
			Seqs: []runtime.SeqView{{Blocks: []int32{0}}, {Blocks: []int32{1, 2}}}, LogitRows: []int32{1, 2},
		}
	}
	check := func(b *runtime.Batch) error { return checkBatch(b, 8, 4, 4, 4, 4, 100, false, true) }
	if err := check(good()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(b *runtime.Batch)
		want string
	}{
		{"empty", func(b *runtime.Batch) { b.Tokens = nil }, "empty batch"},
		{"too many tokens", func(b *runtime.Batch) { b.Tokens = make([]int32, 9) }, "exceeds MaxTokens"},
		{"positions", func(b *runtime.Batch) { b.Positions = b.Positions[:2] }, "positions"},
		{"vocab", func(b *runtime.Batch) { b.Tokens[0] = 100 }, "outside the vocabulary"},
		{"jump", func(b *runtime.Batch) { b.Positions[1] = 3 }, "jumps"},
		{"block missing", func(b *runtime.Batch) { b.Positions[2] = 8; b.Positions = []int32{0, 1, 8} }, "needs 3"},
		{"block outside pool", func(b *runtime.Batch) { b.Seqs[1].Blocks[1] = 4 }, "outside the pool"},
		{"row", func(b *runtime.Batch) { b.LogitRows[0] = 3 }, "outside the batch"},
		{"seq index", func(b *runtime.Batch) { b.SeqOfToken[2] = 2 }, "outside the batch's 2 sequences"},
		{"not contiguous", func(b *runtime.Batch) {
			b.SeqOfToken = []int32{0, 1, 0}
			b.Positions = []int32{0, 5, 1}
		}, "not contiguous"},
	} {
		b := good()
		c.edit(b)
		if err := check(b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	if err := checkBatch(good(), 8, 4, 4, 4, 4, 100, true, true); err == nil {
		t.Error("two logit rows accepted where the plan wants one per token")
	}
}

// Every decode batch size up to min(MaxSeqs, 256) replays a graph by
// default; explicit sizes and NoGraphs are kept.
func TestGraphSizesDefault(t *testing.T) {
	o, err := Options{MaxSeqs: 12}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(o.GraphSizes) != 12 || o.GraphSizes[0] != 1 || o.GraphSizes[11] != 12 {
		t.Errorf("MaxSeqs 12: graph sizes %v, want 1..12", o.GraphSizes)
	}
	if o, _ = (Options{MaxSeqs: 1000, MaxTokens: 2048}).withDefaults(); len(o.GraphSizes) != 256 || o.GraphSizes[255] != 256 {
		t.Errorf("MaxSeqs 1000: %d graph sizes, want 1..256", len(o.GraphSizes))
	}
	if o, _ = (Options{MaxSeqs: 8, GraphSizes: []int{4}}).withDefaults(); len(o.GraphSizes) != 1 {
		t.Errorf("explicit sizes replaced: %v", o.GraphSizes)
	}
}
