package engine

import (
	flatbuffers "github.com/google/flatbuffers/go"

	"github.com/inference-pio/pio/schemas/pio"
)

// Kernels is the CUDA code of an engine: the generated module, its compiled
// images and the launch table (codegen/cuda writes it, runtime/cuda runs
// it). This package stores it; it does not interpret it.
type Kernels struct {
	Source      []byte // the generated .cu
	Images      []KernelImage
	Launches    []KernelLaunch
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

// KernelImage is one compiled form of the module.
type KernelImage struct {
	Arch string // "sm_80", ... (cubin) or "compute_90" (PTX)
	Data []byte
}

// KernelLaunch is one kernel launch of a plan step.
type KernelLaunch struct {
	Step      int32
	Kernel    string
	Params    []uint32 // kind<<16 | index
	Grid      [3][6]int64
	Block     int32
	Mode      uint8
	Rows      [6]int64
	MinRows   int32
	MaxRows   int32
	Workspace int64
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

func (e *encoder) kernelImage(im KernelImage) flatbuffers.UOffsetT {
	arch, data := e.b.CreateString(im.Arch), e.b.CreateByteVector(im.Data)
	pio.KernelImageStart(e.b)
	pio.KernelImageAddArch(e.b, arch)
	pio.KernelImageAddData(e.b, data)
	return pio.KernelImageEnd(e.b)
}

func (e *encoder) launch(l KernelLaunch) flatbuffers.UOffsetT {
	b := e.b
	name := b.CreateString(l.Kernel)
	b.StartVector(4, len(l.Params), 4)
	for j := len(l.Params) - 1; j >= 0; j-- {
		b.PrependUint32(l.Params[j])
	}
	params := b.EndVector(len(l.Params))
	grid := make([]int64, 0, 18)
	for _, d := range l.Grid {
		grid = append(grid, d[:]...)
	}
	gridVec, rows := e.longs(grid), e.longs(l.Rows[:])
	pio.LaunchStart(b)
	pio.LaunchAddStep(b, l.Step)
	pio.LaunchAddKernel(b, name)
	pio.LaunchAddParams(b, params)
	pio.LaunchAddGrid(b, gridVec)
	pio.LaunchAddBlock(b, l.Block)
	pio.LaunchAddMode(b, l.Mode)
	pio.LaunchAddRows(b, rows)
	pio.LaunchAddMinRows(b, l.MinRows)
	pio.LaunchAddMaxRows(b, l.MaxRows)
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
	k.Images = make([]KernelImage, d.vec(kt, slotKernelsImages, 4, fk.ImagesLength()))
	var im pio.KernelImage
	for i := range k.Images {
		fk.Images(&im, i)
		k.Images[i] = KernelImage{Arch: d.str(im.Arch()), Data: d.bytes(im.DataBytes())}
	}
	k.Launches = make([]KernelLaunch, d.vec(kt, slotKernelsLaunches, 4, fk.LaunchesLength()))
	var fl pio.Launch
	for i := range k.Launches {
		fk.Launches(&fl, i)
		lt := fl.Table()
		l := &k.Launches[i]
		l.Step, l.Kernel, l.Block, l.Mode = fl.Step(), d.str(fl.Kernel()), fl.Block(), fl.Mode()
		l.MinRows, l.MaxRows, l.Workspace = fl.MinRows(), fl.MaxRows(), fl.Workspace()
		l.Params = make([]uint32, d.vec(lt, slotLaunchParams, 4, fl.ParamsLength()))
		for j := range l.Params {
			l.Params[j] = fl.Params(j)
		}
		if n := d.vec(lt, slotLaunchGrid, 8, fl.GridLength()); n != 18 {
			badf("kernel launch %d: grid has %d numbers, want 18", i, n)
		}
		for j := 0; j < 18; j++ {
			l.Grid[j/6][j%6] = fl.Grid(j)
		}
		if n := d.vec(lt, slotLaunchRows, 8, fl.RowsLength()); n != 6 {
			badf("kernel launch %d: rows has %d numbers, want 6", i, n)
		}
		for j := 0; j < 6; j++ {
			l.Rows[j] = fl.Rows(j)
		}
	}
	return k
}
