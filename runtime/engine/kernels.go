package engine

import (
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/inference-pio/pio/kernel/abi"
	"github.com/inference-pio/pio/schemas/pio"
)

// Kernels is the CUDA code of an engine: the generated module, its compiled
// images and the launch table (codegen/cuda writes it, runtime/cuda runs
// it), in the launch ABI's types (kernel/abi). This package stores it; it
// does not interpret it.
type Kernels struct {
	Source      []byte // the generated .cu
	Images      []abi.Image
	Launches    []abi.Launch
	TileTokens  int32
	SplitSize   int32
	Argmax      string
	ArgmaxVocab int32
	Compiler    string // nvcc --version of the build
	// Candidates is the sampling-candidates kernel over the logits rows
	// (codegen/cuda's Module.Candidates); "" in engines built before it,
	// whose runtime then downloads logits to sample.
	Candidates string
}

const (
	slotKernelsImages   = 6
	slotKernelsLaunches = 8
	slotLaunchParams    = 8
	slotLaunchGrid      = 10
	slotLaunchRows      = 16
)

// kernels writes a kernels section (0 for none). Unlike the rest of the
// metadata it writes every string and vector even when empty, as format
// 1.1 did, except candidates (absent when empty, as writers before it
// left it).
func (e *encoder) kernels(k *Kernels) flatbuffers.UOffsetT {
	if k == nil {
		return 0
	}
	images := e.vector(each(k.Images, e.kernelImage))
	launches := e.vector(each(k.Launches, e.launch))
	b := e.b
	src, argmax, comp := b.CreateByteVector(k.Source), b.CreateString(k.Argmax), b.CreateString(k.Compiler)
	cands := e.str(k.Candidates)
	pio.KernelsStart(b)
	pio.KernelsAddSource(b, src)
	pio.KernelsAddImages(b, images)
	pio.KernelsAddLaunches(b, launches)
	pio.KernelsAddTileTokens(b, k.TileTokens)
	pio.KernelsAddSplitSize(b, k.SplitSize)
	pio.KernelsAddArgmax(b, argmax)
	pio.KernelsAddArgmaxVocab(b, k.ArgmaxVocab)
	pio.KernelsAddCompiler(b, comp)
	pio.KernelsAddCandidates(b, cands)
	return pio.KernelsEnd(b)
}

func (e *encoder) kernelImage(im abi.Image) flatbuffers.UOffsetT {
	arch, data := e.b.CreateString(im.Arch), e.b.CreateByteVector(im.Data)
	pio.KernelImageStart(e.b)
	pio.KernelImageAddArch(e.b, arch)
	pio.KernelImageAddData(e.b, data)
	return pio.KernelImageEnd(e.b)
}

// paramCode is a launch parameter as the file stores it: kind<<16 | index.
func paramCode(p abi.Param) uint32 { return uint32(p.Kind)<<16 | uint32(p.Index) }

// paramOf unpacks paramCode.
func paramOf(code uint32) abi.Param {
	return abi.Param{Kind: abi.ParamKind(code >> 16), Index: uint16(code)}
}

// appendExpr appends a grid or rows expression as the file stores it, six
// numbers: T, S, Tiles, Splits, Fixed, Div (a launch's grid is three, 18
// numbers).
func appendExpr(v []int64, e abi.Expr) []int64 {
	return append(v, e.T, e.S, e.Tiles, e.Splits, e.Fixed, e.Div)
}

// exprOf reads back the six numbers of appendExpr from get(at) on.
func exprOf(get func(int) int64, at int) abi.Expr {
	return abi.Expr{T: get(at), S: get(at + 1), Tiles: get(at + 2), Splits: get(at + 3), Fixed: get(at + 4), Div: get(at + 5)}
}

func (e *encoder) launch(l abi.Launch) flatbuffers.UOffsetT {
	b := e.b
	name := b.CreateString(l.Kernel)
	b.StartVector(4, len(l.Params), 4)
	for j := len(l.Params) - 1; j >= 0; j-- {
		b.PrependUint32(paramCode(l.Params[j]))
	}
	params := b.EndVector(len(l.Params))
	grid := make([]int64, 0, 18)
	for _, d := range l.Grid {
		grid = appendExpr(grid, d)
	}
	gridVec, rows := e.longs(grid), e.longs(appendExpr(make([]int64, 0, 6), l.Rows))
	pio.LaunchStart(b)
	pio.LaunchAddStep(b, int32(l.Step))
	pio.LaunchAddKernel(b, name)
	pio.LaunchAddParams(b, params)
	pio.LaunchAddGrid(b, gridVec)
	pio.LaunchAddBlock(b, int32(l.Block))
	pio.LaunchAddMode(b, uint8(l.Mode))
	pio.LaunchAddRows(b, rows)
	pio.LaunchAddMinRows(b, int32(l.MinRows))
	pio.LaunchAddMaxRows(b, int32(l.MaxRows))
	pio.LaunchAddWorkspace(b, l.Workspace)
	return pio.LaunchEnd(b)
}

func (d *decoder) kernels(fk *pio.Kernels) *Kernels {
	k := &Kernels{
		Source:      d.bytes(fk.SourceBytes()),
		TileTokens:  fk.TileTokens(),
		SplitSize:   fk.SplitSize(),
		Argmax:      d.str(fk.Argmax()),
		ArgmaxVocab: fk.ArgmaxVocab(),
		Compiler:    d.str(fk.Compiler()),
		Candidates:  d.str(fk.Candidates()),
	}
	kt := fk.Table()
	k.Images = make([]abi.Image, d.vec(kt, slotKernelsImages, 4, fk.ImagesLength()))
	var im pio.KernelImage
	for i := range k.Images {
		fk.Images(&im, i)
		k.Images[i] = abi.Image{Arch: d.str(im.Arch()), Data: d.bytes(im.DataBytes())}
	}
	k.Launches = make([]abi.Launch, d.vec(kt, slotKernelsLaunches, 4, fk.LaunchesLength()))
	var fl pio.Launch
	for i := range k.Launches {
		fk.Launches(&fl, i)
		lt := fl.Table()
		l := &k.Launches[i]
		l.Step, l.Kernel, l.Block, l.Mode = int(fl.Step()), d.str(fl.Kernel()), int(fl.Block()), abi.Mode(fl.Mode())
		l.MinRows, l.MaxRows, l.Workspace = int(fl.MinRows()), int(fl.MaxRows()), fl.Workspace()
		l.Params = make([]abi.Param, d.vec(lt, slotLaunchParams, 4, fl.ParamsLength()))
		for j := range l.Params {
			l.Params[j] = paramOf(fl.Params(j))
		}
		if n := d.vec(lt, slotLaunchGrid, 8, fl.GridLength()); n != 18 {
			badf("kernel launch %d: grid has %d numbers, want 18", i, n)
		}
		for j := range l.Grid {
			l.Grid[j] = exprOf(fl.Grid, 6*j)
		}
		if n := d.vec(lt, slotLaunchRows, 8, fl.RowsLength()); n != 6 {
			badf("kernel launch %d: rows has %d numbers, want 6", i, n)
		}
		l.Rows = exprOf(fl.Rows, 0)
	}
	return k
}
