package cuda

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/kernel/abi"
)

// glmMLA is GLM-4.7-Flash's absorbed attention: 20 heads, kv_lora_rank
// 512, qk_rope_head_dim 64, softmax scale 1/√(qk_nope + qk_rope) = 1/16.
const glmHeads, glmRank, glmRope = 20, 512, 64

// mlaPlan is one mla_attention step at the given widths over a latent
// cache of dtype kv.
func mlaPlan(t *testing.T, heads, r, dr int, kv ir.DType) *ir.Plan {
	t.Helper()
	b := ir.NewBuilder("mla")
	in := func(name string, d ...ir.Dim) *ir.Value {
		return b.Input(name, ir.F32, append([]ir.Dim{ir.T}, d...)...)
	}
	c := b.Cache(ir.CacheSpec{Kind: ir.CacheLatent, DType: kv, Entries: []ir.Shape{ir.Sh(ir.Dim(r)), ir.Sh(ir.Dim(dr))}})
	y := b.MLAAttention(in("q_lat", ir.Dim(heads), ir.Dim(r)), in("q_rope", ir.Dim(heads), ir.Dim(dr)), in("c_kv", ir.Dim(r)), in("k_rope", ir.Dim(dr)), c, 1/math.Sqrt(256))
	b.Output("y", y)
	return LoweredPlan(t, b)
}

// TestMLAPrefillTile: the prefill geometry at GLM-4.7-Flash's widths is the
// one mlaPrefillTile's estimate names (2 tokens × 20 heads, 5 rows a warp,
// 16 positions a chunk), fits static shared memory, and covers every head
// and every token of a tile; small widths get more rows per block.
func TestMLAPrefillTile(t *testing.T) {
	for _, c := range []struct{ heads, r, dr, tile int }{{glmHeads, glmRank, glmRope, maxTileTokens}, {4, 32, 8, maxTileTokens}, {128, 512, 64, 16}, {7, 512, 64, 4}} {
		tl, err := mlaPrefillTile(c.heads, c.r, c.dr, c.tile)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		smem := tl.bk*(c.r+c.dr)*4 + tl.rpw*mlaWarps*tl.bk*4 + tl.bk*8
		switch {
		case tl.hb*tl.hg != c.heads, tl.bt*tl.sub < c.tile, tl.rows != tl.hb*tl.bt, tl.rpw*mlaWarps < tl.rows:
			t.Errorf("%+v: geometry %+v does not cover the tile", c, tl)
		case smem > staticSmem || tl.bk%4 != 0 || tl.bk > 32:
			t.Errorf("%+v: %d positions a chunk, %d bytes of shared memory", c, tl.bk, smem)
		case tl.rpw*(2*((c.r+31)/32)+(c.dr+31)/32+6) > mlaRegBudget && tl.rpw > 1:
			t.Errorf("%+v: %d rows a warp exceed the register budget", c, tl.rpw)
		}
		t.Logf("%+v: %+v, %d B shared", c, tl, smem)
	}
	// GLM-4.7-Flash as the estimate says, and the other geometries
	// runtime/cuda's TestEmulatedMLAPrefill runs.
	for _, c := range []struct {
		heads, r, dr int
		want         mlaTile
	}{
		{glmHeads, glmRank, glmRope, mlaTile{hb: 20, hg: 1, bt: 2, sub: 8, rows: 40, rpw: 5, bk: 16}},
		{6, 72, 24, mlaTile{hb: 6, hg: 1, bt: 10, sub: 2, rows: 60, rpw: 8, bk: 32}},
		{24, 32, 8, mlaTile{hb: 8, hg: 3, bt: 8, sub: 2, rows: 64, rpw: 8, bk: 32}},
	} {
		if tl, _ := mlaPrefillTile(c.heads, c.r, c.dr, maxTileTokens); tl != c.want {
			t.Errorf("%d heads, latent %d, rope %d: %+v, want %+v", c.heads, c.r, c.dr, tl, c.want)
		}
	}
	tl, _ := mlaPrefillTile(glmHeads, glmRank, glmRope, maxTileTokens)
	small, _ := mlaPrefillTile(4, 32, 8, maxTileTokens)
	if small.rows <= tl.rows {
		t.Errorf("rank 32: %d rows a block, no more than rank 512's %d", small.rows, tl.rows)
	}
}

// TestCompileMLARealWidths compiles GLM-4.7-Flash's latent attention
// kernels (f32 and bf16 caches) for every target arch with the real nvcc,
// warnings as errors, and checks with ptxas -v on sm_80 and sm_90a that
// none spills.
func TestCompileMLARealWidths(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	src := NewKernelSource()
	for _, kv := range []ir.DType{ir.F32, ir.BF16} {
		m, err := Generate(mlaPlan(t, glmHeads, glmRank, glmRope, kv))
		if err != nil {
			t.Fatalf("%v cache: %v", kv, err)
		}
		src.Add(m, nil, nil)
	}
	CompileEveryArch(t, nvcc, src.String(), src.Names)
	for _, arch := range []string{"sm_80", "sm_90a"} {
		out := PtxasReport(t, nvcc, src.String(), arch)
		es := ptxasEntries(out, "mla_")
		for _, e := range es {
			if e.spills() {
				t.Errorf("%s: %s spills:\n%s", arch, e.name, e.report)
			}
			if e.regs >= 0 {
				t.Logf("%s: %s: %d registers", arch, e.name, e.regs)
			}
		}
		if len(es) < 5 {
			t.Fatalf("%s: ptxas reported on %d mla_ kernels, want the prefill, decode and combine kernels of both caches:\n%s", arch, len(es), out)
		}
	}
}

// TestGenerateMLALaunches: GLM-4.7-Flash's mla_attention step launches the
// latent append always, the tiled prefill on prefill steps (a grid of
// tiles × blocks per tile, the tile's metadata, no per-token kernel) and
// the split decode and combine on decode steps.
func TestGenerateMLALaunches(t *testing.T) {
	m, err := Generate(mlaPlan(t, glmHeads, glmRank, glmRope, ir.BF16))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range m.Launches {
		name := l.Kernel[:strings.LastIndex(l.Kernel, "_")]
		got = append(got, fmt.Sprintf("%s/%d", name, l.Mode))
		if name != "mla_prefill" {
			continue
		}
		if want := [3]abi.Expr{{Tiles: 1}, {Fixed: 8}, {Fixed: 1}}; l.Grid != want || l.Block != mlaWarps*32 {
			t.Errorf("mla_prefill: grid %v, block %d; want %v, %d", l.Grid, l.Block, want, mlaWarps*32)
		}
		tiles := false
		for _, p := range l.Params {
			tiles = tiles || p.Kind == abi.PTiles
		}
		if !tiles {
			t.Errorf("mla_prefill does not take the prefill tiles")
		}
	}
	want := []string{"latent_append/0", "mla_prefill/2", "mla_attention/1", "mla_combine/1"}
	if !slices.Equal(got, want) {
		t.Errorf("launches %v, want %v", got, want)
	}
}
