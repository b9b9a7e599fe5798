package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/passes"
	"github.com/inference-pio/pio/runtime"
)

// weightSet holds a test's weights by name: their dtype and values (exactly
// representable in that dtype).
type weightSet struct {
	rng   *rand.Rand
	shape map[string][]int
	vals  map[string][]float32
}

func newWeightSet(seed uint64) *weightSet {
	return &weightSet{rng: rand.New(rand.NewPCG(seed, 1)), shape: map[string][]int{}, vals: map[string][]float32{}}
}

// add declares a random weight of normal values times scale, rounded to dt,
// and returns it. A name added before keeps its values, so that a graph
// built again with f32 weights holds the exact upcast.
func (ws *weightSet) add(b *ir.Builder, name string, dt ir.DType, scale float64, dims ...ir.Dim) *ir.Value {
	if _, ok := ws.vals[name]; ok {
		return b.Weight(name, dt, dims...)
	}
	n := 1
	var shape []int
	for _, d := range dims {
		n *= int(d)
		shape = append(shape, int(d))
	}
	ws.shape[name] = shape
	v := make([]float32, n)
	for i := range v {
		v[i] = roundTo(dt, float32(ws.rng.NormFloat64()*scale))
	}
	ws.vals[name] = v
	return b.Weight(name, dt, dims...)
}

// weights returns the plan's weights in plan order, encoded in the plan's
// dtypes.
func (ws *weightSet) weights(p *ir.Plan) []Weight {
	var out []Weight
	for _, pw := range p.Weights {
		dt := pw.DType
		shape := make([]int64, len(pw.Shape))
		for i, d := range pw.Shape {
			shape[i] = int64(d)
		}
		out = append(out, Weight{DType: dt, Shape: shape, Data: encode(dt, ws.vals[pw.Name])})
	}
	return out
}

// roundTo rounds f to a value dt holds exactly: bf16 by round-to-nearest-even,
// f16 to a multiple of 1/256 in [-2, 2] (always a normal half or zero).
func roundTo(dt ir.DType, f float32) float32 {
	switch dt {
	case ir.BF16:
		return math.Float32frombits(uint32(bf16Bits(f)) << 16)
	case ir.F16:
		return float32(math.Round(math.Max(-2, math.Min(2, float64(f)))*256) / 256)
	}
	return f
}

func bf16Bits(f float32) uint16 {
	b := math.Float32bits(f)
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// f16Bits encodes a value roundTo(F16, ·) produced.
func f16Bits(f float32) uint16 {
	if f == 0 {
		return 0
	}
	var sign uint16
	a := f
	if f < 0 {
		sign, a = 0x8000, -f
	}
	frac, exp := math.Frexp(float64(a)) // a = frac·2^exp, frac in [0.5, 1)
	h := sign | uint16(exp-1+15)<<10 | uint16((frac*2-1)*1024)
	if f16ToF32(h) != f {
		panic(fmt.Sprintf("f16Bits(%v): not exact", f))
	}
	return h
}

func encode(dt ir.DType, v []float32) []byte {
	out := make([]byte, len(v)*dt.Size())
	for i, f := range v {
		switch dt {
		case ir.F32:
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(f))
		case ir.BF16:
			binary.LittleEndian.PutUint16(out[2*i:], bf16Bits(f))
		case ir.F16:
			binary.LittleEndian.PutUint16(out[2*i:], f16Bits(f))
		}
	}
	return out
}

// finish builds and lowers the graph.
func finish(t testing.TB, b *ir.Builder) *ir.Plan {
	t.Helper()
	g, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	p, err := passes.Lower(g)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newBackend(t testing.TB, p *ir.Plan, w []Weight, opt Options) *Backend {
	t.Helper()
	be, err := New(p, w, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func output(t testing.TB, be *Backend, name string) ([]float32, []int) {
	t.Helper()
	d, s, err := be.Output(name)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), d...), s
}

// maxRel returns max|got−want| / max|want|.
func maxRel(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range got {
		num = max(num, math.Abs(float64(got[i])-want[i]))
		den = max(den, math.Abs(want[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, f := range v {
		out[i] = float64(f)
	}
	return out
}

// chunk is some tokens of one sequence: its block table, the position of the
// first token, and the token ids.
type chunk struct {
	blocks []int32
	start  int32
	tokens []int32
}

// makeBatch concatenates chunks of distinct sequences into one batch whose
// logit rows are each chunk's last token.
func makeBatch(chunks ...chunk) *runtime.Batch {
	bt := &runtime.Batch{}
	for s, c := range chunks {
		bt.Seqs = append(bt.Seqs, runtime.SeqView{Blocks: c.blocks, Slot: int32(s)})
		for i, tok := range c.tokens {
			bt.Tokens = append(bt.Tokens, tok)
			bt.Positions = append(bt.Positions, c.start+int32(i))
			bt.SeqOfToken = append(bt.SeqOfToken, int32(s))
		}
		bt.LogitRows = append(bt.LogitRows, int32(len(bt.Tokens)-1))
	}
	return bt
}

func step(t testing.TB, be *Backend, bt *runtime.Batch) {
	t.Helper()
	if err := be.Step(bt); err != nil {
		t.Fatal(err)
	}
}
