package modeltest

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/runtime"
)

// routes reads the reference's chosen experts (sorted per token) and the
// selection margins of prompt p, MoE layer l, from dir/golden.safetensors.
func routes(t testing.TB, dir string, p, l int) (ids, margin []float32, ok bool) {
	t.Helper()
	f, err := hf.OpenSafetensors(filepath.Join(dir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	it, ok := f.Tensor(fmt.Sprintf("p%d.router.%d", p, l))
	if !ok {
		return nil, nil, false
	}
	for i := int64(0); i < it.NumElements(); i++ {
		d := it.Data[4*i:]
		ids = append(ids, float32(int32(uint32(d[0])|uint32(d[1])<<8|uint32(d[2])<<16|uint32(d[3])<<24)))
	}
	mt, ok := f.Tensor(fmt.Sprintf("p%d.router_margin.%d", p, l))
	if !ok {
		t.Fatalf("golden %s: p%d.router.%d has no margins", dir, p, l)
	}
	if margin, err = mt.Float32(); err != nil {
		t.Fatal(err)
	}
	return ids, margin, true
}

// CheckRoutes compares the experts the last step chose (taps
// "router.<layer>") with the reference's, token by token, as sets, wherever
// the reference's k-th and (k+1)-th selection scores are clearly apart (f32
// noise is ~1e-6). It returns the number of tokens compared.
func CheckRoutes(t testing.TB, be runtime.Backend, dir string, p, layers int) int {
	t.Helper()
	compared := 0
	for l := 0; l < layers; l++ {
		want, margin, ok := routes(t, dir, p, l)
		if !ok {
			continue
		}
		got := Output(t, be, "router."+strconv.Itoa(l))
		k := len(want) / len(margin)
		for tok := range margin {
			if margin[tok] < 1e-4 {
				continue
			}
			g := slices.Clone(got[tok*k : (tok+1)*k])
			slices.Sort(g)
			if !slices.Equal(g, want[tok*k:(tok+1)*k]) {
				t.Errorf("prompt %d layer %d token %d: experts %v, reference %v", p, l, tok, g, want[tok*k:(tok+1)*k])
			}
			compared++
		}
	}
	return compared
}
