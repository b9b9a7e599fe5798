package compiler

import (
	"encoding/binary"
	"fmt"
	"math"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/ir"
)

// DefaultQuantGroup is the number of consecutive weights of a row that share
// one scale when Options.QuantGroup is 0. 32 costs one f32 per 32 weights
// (+1 bit per weight: int8 is 9 bits/weight, int4 5, fp8 9) and keeps int4
// close to bf16 (see docs and the accuracy test); 64 or 128 trade accuracy
// for bandwidth.
const DefaultQuantGroup = 32

// DefaultHeadFormat is the lm_head format when Options.QuantHead is empty.
func DefaultHeadFormat(quant string) string {
	if quant == "int4" {
		return "int8"
	}
	return quant
}

// quantizeGraph rewrites every matmul whose weight is a float [N, K]
// weight value with K a multiple of group into matmul_q over two new weight
// values, <name>@<format> (codes) and <name>@scales (see ir/op_quant.go for
// the formats). It runs before the pass pipeline, so the fusions, which
// match plain matmuls, leave quantized projections unfused. The returned
// recipes, keyed by the new names, tell the writer how to build those
// tensors from the original weight (attachRecipes puts them on the plan).
// Originals no longer read (all but tied embedding tables) never enter the
// plan. It also returns how many matmul weights it quantized and how many it
// kept because K is not a multiple of group.
//
// The output projection (lm_head: a weight named *lm_head.weight, or a
// tied embedding table) takes headFormat instead: "none" keeps it float.
// Its errors land directly on the logits, so int4 engines default to an
// int8 head (see DefaultHeadFormat), as llama.cpp's Q4 mixes do.
func quantizeGraph(g *ir.Graph, format, headFormat string, group int) (recipes map[string]*ir.Recipe, quantized, kept int, err error) {
	if !slices.Contains(ir.QuantFormats, format) {
		return nil, 0, 0, fmt.Errorf("--quant must be one of %v, got %q", ir.QuantFormats, format)
	}
	if headFormat == "" {
		headFormat = format
	}
	if headFormat != "none" && !slices.Contains(ir.QuantFormats, headFormat) {
		return nil, 0, 0, fmt.Errorf("lm_head quantization must be none or one of %v, got %q", ir.QuantFormats, headFormat)
	}
	tables := map[*ir.Value]bool{}
	for _, v := range g.Values {
		if v.Op == ir.OpEmbedding {
			tables[v.Args[0]] = true
		}
	}
	if group <= 0 || group%32 != 0 {
		return nil, 0, 0, fmt.Errorf("quant group %d must be a positive multiple of 32", group)
	}
	recipes = map[string]*ir.Recipe{}
	derived := map[*ir.Value][2]*ir.Value{}
	var added []*ir.Value
	scratch := &ir.Graph{Name: g.Name} // new weights are made here, then put first
	for _, v := range g.Values {
		if v.Op != ir.OpMatMul || v.Args[1].Op != ir.OpWeight {
			continue
		}
		w := v.Args[1]
		if len(w.Shape) != 2 || !w.DType.IsFloat() {
			continue
		}
		format := format
		if tables[w] || strings.HasSuffix(w.Name(), "lm_head.weight") {
			if format = headFormat; format == "none" {
				continue
			}
		}
		if w.Shape[1]%ir.Dim(group) != 0 {
			kept++
			continue
		}
		d, ok := derived[w]
		if !ok {
			cdt, csh, err := ir.QuantCodes(format, w.Shape[0], w.Shape[1])
			if err != nil {
				return nil, 0, 0, fmt.Errorf("weight %q: %w", w.Name(), err)
			}
			src := ir.PlanTensor{Name: w.Name(), DType: w.DType, Shape: w.Shape.Clone()}
			for i, part := range []struct {
				name string
				dt   ir.DType
				sh   ir.Shape
			}{{"codes", cdt, csh}, {"scales", ir.F32, ir.Sh(w.Shape[0], w.Shape[1]/ir.Dim(group))}} {
				name := w.Name() + "@" + format
				if part.name == "scales" {
					name = w.Name() + "@scales"
				}
				nv, err := scratch.NewValue(ir.OpWeight, part.dt, part.sh, nil, ir.Str("name", name))
				if err != nil {
					return nil, 0, 0, err
				}
				at, err := ir.MakeAttrs(ir.Str("format", format), ir.Int("group", int64(group)), ir.Str("part", part.name))
				if err != nil {
					return nil, 0, 0, err
				}
				recipes[name] = &ir.Recipe{Op: ir.OpQuantize, Attrs: at, Parts: []ir.PlanTensor{src}}
				d[i] = nv
				added = append(added, nv)
			}
			derived[w] = d
			quantized++
		}
		at, err := ir.MakeAttrs(append(slices.Clone(v.Attrs), ir.Str("format", format), ir.Int("group", int64(group)))...)
		if err != nil {
			return nil, 0, 0, err
		}
		v.Op, v.Attrs, v.Args = ir.OpMatMulQ, at, []*ir.Value{v.Args[0], d[0], d[1]}
	}
	g.Values = append(added, g.Values...) // weights have no args: first is always in order
	g.Renumber()
	if err := ir.Verify(g); err != nil {
		return nil, 0, 0, fmt.Errorf("quantize: %w", err)
	}
	return recipes, quantized, kept, nil
}

// attachRecipes gives the plan's quantized weights their recipes.
func attachRecipes(p *ir.Plan, recipes map[string]*ir.Recipe) {
	for i := range p.Weights {
		if r, ok := recipes[p.Weights[i].Name]; ok {
			p.Weights[i].Recipe = r
		}
	}
}

// materializeQuant is materialize that also builds quantize recipes: it
// materialises the original weight, widens it to f32 and quantizes it.
func materializeQuant(t ir.PlanTensor, lookup func(string) (*hf.Tensor, bool), dst []byte) error {
	if t.Recipe == nil || t.Recipe.Op != ir.OpQuantize {
		return materialize(t, lookup, dst)
	}
	if len(t.Recipe.Parts) != 1 || len(t.Recipe.Parts[0].Shape) != 2 {
		return fmt.Errorf("weight %q: quantize needs one 2-D part", t.Name)
	}
	src := t.Recipe.Parts[0]
	n, k := int(src.Shape[0]), int(src.Shape[1])
	raw := make([]byte, n*k*src.DType.Size())
	if err := materialize(src, lookup, raw); err != nil {
		return fmt.Errorf("weight %q: %w", t.Name, err)
	}
	w := make([]float32, n*k)
	for i := range w {
		switch src.DType {
		case ir.F32:
			w[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		case ir.BF16:
			w[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		default:
			return fmt.Errorf("weight %q: cannot quantize %v", t.Name, src.DType)
		}
	}
	at := t.Recipe.Attr()
	group := int(at.Int("group"))
	if group <= 0 || k%group != 0 {
		return fmt.Errorf("weight %q: group %d does not divide K = %d", t.Name, group, k)
	}
	codes, scales, err := quantizeCached(src.Name, w, n, k, at.String("format"), group)
	if err != nil {
		return fmt.Errorf("weight %q: %w", t.Name, err)
	}
	switch at.String("part") {
	case "codes":
		if len(dst) != len(codes) {
			return fmt.Errorf("weight %q: %d bytes, codes are %d", t.Name, len(dst), len(codes))
		}
		copy(dst, codes)
	case "scales":
		if len(dst) != 4*len(scales) {
			return fmt.Errorf("weight %q: %d bytes, scales are %d", t.Name, len(dst), 4*len(scales))
		}
		for i, s := range scales {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(s))
		}
	default:
		return fmt.Errorf("weight %q: unknown quantize part", t.Name)
	}
	return nil
}

// lastQuant remembers the last quantization, so that a weight's codes and
// scales (written one after the other) cost one quantization.
var lastQuant struct {
	sync.Mutex
	key    string
	codes  []byte
	scales []float32
}

func quantizeCached(name string, w []float32, n, k int, format string, group int) ([]byte, []float32, error) {
	key := fmt.Sprintf("%s|%d|%d|%s|%d", name, n, k, format, group)
	lastQuant.Lock()
	defer lastQuant.Unlock()
	if lastQuant.key == key {
		return lastQuant.codes, lastQuant.scales, nil
	}
	codes, scales, err := quantize(w, n, k, format, group)
	if err != nil {
		return nil, nil, err
	}
	lastQuant.key, lastQuant.codes, lastQuant.scales = key, codes, scales
	return codes, scales, nil
}

// quantize returns the codes and scales of w [n, k] (row-major) in format,
// group-wise along rows; layouts as in ir/op_quant.go and runtime/cpu/kern.
func quantize(w []float32, n, k int, format string, group int) (codes []byte, scales []float32, err error) {
	gs := k / group
	scales = make([]float32, n*gs)
	switch format {
	case "int8", "fp8":
		codes = make([]byte, n*k)
	case "int4":
		codes = make([]byte, n*k/2)
	default:
		return nil, nil, fmt.Errorf("unknown format %q", format)
	}
	// Groups are independent: split them over the CPUs.
	workers := min(goruntime.GOMAXPROCS(0), max(1, len(scales)/1024))
	var wg sync.WaitGroup
	for wk := 0; wk < workers; wk++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			quantizeGroups(w, k, format, group, codes, scales, wk*len(scales)/workers, (wk+1)*len(scales)/workers)
		}()
	}
	wg.Wait()
	return codes, scales, nil
}

// quantizeGroups fills groups [g0, g1) of codes and scales (see quantize).
func quantizeGroups(w []float32, k int, format string, group int, codes []byte, scales []float32, g0, g1 int) {
	gs := k / group
	for g := g0; g < g1; g++ {
		row, col := g/gs, (g%gs)*group
		v := w[row*k+col : row*k+col+group]
		amax := float32(0)
		for _, x := range v {
			amax = max(amax, float32(math.Abs(float64(x))))
		}
		switch format {
		case "int8":
			s := amax / 127
			scales[g] = s
			c := codes[row*k+col:]
			for i, x := range v {
				c[i] = byte(int8(quantInt(x, s, 127)))
			}
		case "int4":
			s := bestInt4Scale(v, amax)
			scales[g] = s
			c := codes[(row*k+col)/2:]
			for b := 0; b < group; b += 32 {
				for j := 0; j < 16; j++ {
					lo := quantInt(v[b+j], s, 7) + 8
					hi := quantInt(v[b+j+16], s, 7) + 8
					c[b/2+j] = byte(lo) | byte(hi)<<4
				}
			}
		case "fp8":
			s := amax / 448
			scales[g] = s
			c := codes[row*k+col:]
			for i, x := range v {
				if s == 0 {
					c[i] = 0
					continue
				}
				c[i] = encodeE4M3(x / s)
			}
		}
	}
}

// quantInt rounds x/s to the nearest integer in [-lim, lim] (0 when s is 0).
func quantInt(x, s float32, lim int) int {
	if s == 0 {
		return 0
	}
	q := int(math.RoundToEven(float64(x / s)))
	return max(-lim, min(lim, q))
}

// bestInt4Scale picks the scale of one int4 group from amax/7 … amax/8.5
// that minimises the group's squared error (clipping the few largest
// weights can pay for a finer grid everywhere else).
func bestInt4Scale(v []float32, amax float32) float32 {
	best, bestErr := amax/7, math.Inf(1)
	if amax == 0 {
		return 0
	}
	for i := 0; i <= 15; i++ {
		s := amax / (7 + float32(i)*0.1)
		e := 0.0
		for _, x := range v {
			d := float64(x - s*float32(quantInt(x, s, 7)))
			e += d * d
		}
		if e < bestErr {
			best, bestErr = s, e
		}
	}
	return best
}

// encodeE4M3 rounds v to the nearest FP8 E4M3 value (ties to even),
// saturating at ±448. Magnitudes below the smallest normal 2⁻⁶ go to 0 or
// 2⁻⁶, whichever is nearer: no subnormal codes (runtime/cpu/kern relies on
// it).
func encodeE4M3(v float32) byte {
	var sign byte
	if v < 0 || (v == 0 && math.Signbit(float64(v))) {
		sign, v = 0x80, -v
	}
	a := float64(v)
	switch {
	case !(a < 448): // also NaN
		return sign | 0x7e
	case a < 0x1p-7:
		return sign
	case a < 0x1p-6:
		return sign | 1<<3
	}
	frac, exp := math.Frexp(a) // a = frac·2^exp, frac in [0.5, 1)
	e := exp - 1               // a = (2·frac)·2^e, 2·frac in [1, 2)
	m := math.RoundToEven((2*frac - 1) * 8)
	if m == 8 {
		m, e = 0, e+1
	}
	if e > 8 || (e == 8 && m > 6) {
		return sign | 0x7e
	}
	return sign | byte(e+7)<<3 | byte(m)
}
