package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/inference-pio/pio/internal/tolerance"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
)

// f32 vs a float64 reference: f32 rounding of a few operations per element,
// and f32 dot products of up to ~100 terms.
const tol = 1e-5

// opCase is one kernel under test: build adds the op to a graph whose
// activations x and y are [T, H] rows of two random tables; ref computes the
// expected output from those rows in float64.
type opCase struct {
	name  string
	build func(b *ir.Builder, ws *weightSet, x, y *ir.Value) *ir.Value
	ref   func(ws *weightSet, x, y [][]float64) []float64
}

func TestKernels(t *testing.T) {
	const V, H, N = 41, 27, 37 // H and N not multiples of the unroll and tile sizes
	cases := []opCase{
		{"embedding", func(b *ir.Builder, _ *weightSet, x, _ *ir.Value) *ir.Value { return x },
			func(_ *weightSet, x, _ [][]float64) []float64 { return flat(x) }},
		{"rms_norm", func(b *ir.Builder, ws *weightSet, x, _ *ir.Value) *ir.Value {
			return b.RMSNorm(x, ws.add(b, "w", ir.F32, 1, H), 1e-6, false)
		}, func(ws *weightSet, x, _ [][]float64) []float64 { return refRMSNorm(x, ws.f64("w"), 1e-6, false) }},
		{"rms_norm_unit_offset", func(b *ir.Builder, ws *weightSet, x, _ *ir.Value) *ir.Value {
			return b.RMSNorm(x, ws.add(b, "w", ir.F32, 0.1, H), 1e-5, true)
		}, func(ws *weightSet, x, _ [][]float64) []float64 { return refRMSNorm(x, ws.f64("w"), 1e-5, true) }},
		{"matmul", func(b *ir.Builder, ws *weightSet, x, _ *ir.Value) *ir.Value {
			return b.MatMul(x, ws.add(b, "w", ir.F32, 1, N, H))
		}, func(ws *weightSet, x, _ [][]float64) []float64 { return refMatMul(x, ws.f64("w"), N) }},
		{"silu", func(b *ir.Builder, _ *weightSet, x, _ *ir.Value) *ir.Value { return b.SiLU(x) },
			func(_ *weightSet, x, _ [][]float64) []float64 {
				return mapRows(x, func(v float64) float64 { return v / (1 + math.Exp(-v)) })
			}},
		{"sigmoid", func(b *ir.Builder, _ *weightSet, x, _ *ir.Value) *ir.Value { return b.Sigmoid(x) },
			func(_ *weightSet, x, _ [][]float64) []float64 {
				return mapRows(x, func(v float64) float64 { return 1 / (1 + math.Exp(-v)) })
			}},
		{"mul", func(b *ir.Builder, _ *weightSet, x, y *ir.Value) *ir.Value { return b.Mul(x, y) },
			func(_ *weightSet, x, y [][]float64) []float64 {
				return zipRows(x, y, func(a, b float64) float64 { return a * b })
			}},
		{"add", func(b *ir.Builder, _ *weightSet, x, y *ir.Value) *ir.Value { return b.Add(x, y) },
			func(_ *weightSet, x, y [][]float64) []float64 {
				return zipRows(x, y, func(a, b float64) float64 { return a + b })
			}},
		{"swiglu", func(b *ir.Builder, _ *weightSet, x, y *ir.Value) *ir.Value { return b.Mul(b.SiLU(x), y) },
			func(_ *weightSet, x, y [][]float64) []float64 {
				return zipRows(x, y, func(a, b float64) float64 { return a / (1 + math.Exp(-a)) * b })
			}},
	}
	for _, tc := range cases {
		for _, T := range []int{1, 3, 4, 5, 64, 70, 130} {
			for _, threads := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s/T=%d/threads=%d", tc.name, T, threads), func(t *testing.T) {
					ws := newWeightSet(uint64(T))
					b := ir.NewBuilder("kernel")
					tok := b.Input("tokens", ir.I32, ir.T)
					x := b.Embedding(ws.add(b, "x", ir.F32, 1, V, H), tok)
					y := b.Embedding(ws.add(b, "y", ir.F32, 1, V, H), tok)
					b.Output("out", tc.build(b, ws, x, y))
					p := finish(t, b)
					be := newBackend(t, p, ws.weights(p), Options{MaxTokens: 160, Threads: threads})

					tokens := randTokens(ws.rng, T, V)
					step(t, be, makeBatch(chunk{start: 0, tokens: tokens}))
					got, _ := output(t, be, "out")
					xs, ys := ws.rows("x", tokens), ws.rows("y", tokens)
					if e := maxRel(got, tc.ref(ws, xs, ys)); !tolerance.Within(t, e, tol) {
						t.Errorf("max relative error %.3g > %g", e, tol)
					}
				})
			}
		}
	}
}

func TestGatherRows(t *testing.T) {
	ws := newWeightSet(7)
	b := ir.NewBuilder("gather")
	tok := b.Input("tokens", ir.I32, ir.T)
	rows := b.Input("logit_rows", ir.I32, ir.S)
	x := b.Embedding(ws.add(b, "x", ir.F32, 1, 10, 6), tok)
	b.Output("all", x)
	b.Output("kept", b.GatherRows(x, rows))
	p := finish(t, b)
	be := newBackend(t, p, ws.weights(p), Options{})
	three := makeBatch(chunk{tokens: []int32{1, 2, 3}}, chunk{tokens: []int32{4}}, chunk{tokens: []int32{5, 6}})
	three.LogitRows = []int32{5, 0, 3}
	every := makeBatch(chunk{tokens: []int32{9, 8, 7, 6}}) // a full forward keeps every row
	every.LogitRows = []int32{0, 1, 2, 3}
	for _, bt := range []*runtime.Batch{three, every} {
		step(t, be, bt)
		got, shape := output(t, be, "kept")
		all, _ := output(t, be, "all")
		if shape[0] != len(bt.LogitRows) || shape[1] != 6 {
			t.Fatalf("shape %v, want [%d 6]", shape, len(bt.LogitRows))
		}
		var want []float64
		for _, r := range bt.LogitRows {
			want = append(want, f64s(all[6*r:6*r+6])...)
		}
		if e := maxRel(got, want); e != 0 {
			t.Errorf("gather_rows differs: %g", e)
		}
	}
}

func TestRoPE(t *testing.T) {
	const V, heads, hd = 13, 3, 16
	for _, style := range []string{"neox", "interleaved"} {
		for _, rd := range []int{hd, 8} {
			t.Run(fmt.Sprintf("%s/rd=%d", style, rd), func(t *testing.T) {
				ws := newWeightSet(uint64(rd))
				b := ir.NewBuilder("rope")
				tok := b.Input("tokens", ir.I32, ir.T)
				pos := b.Input("positions", ir.I32, ir.T)
				x := b.Reshape(b.Embedding(ws.add(b, "x", ir.F32, 1, V, heads*hd), tok), ir.T, heads, hd)
				const theta = 10000.0
				b.Output("out", b.RoPE(x, pos, ir.RoPEOpts{Theta: theta, RotaryDims: rd, Style: style}))
				p := finish(t, b)
				be := newBackend(t, p, ws.weights(p), Options{Threads: 2})

				tokens := randTokens(ws.rng, 20, V)
				bt := makeBatch(chunk{start: 3, tokens: tokens[:12]}, chunk{start: 40, tokens: tokens[12:]})
				step(t, be, bt)
				got, _ := output(t, be, "out")

				var want []float64
				for i, row := range ws.rows("x", tokens) {
					p := float64(bt.Positions[i])
					for h := 0; h < heads; h++ {
						x := row[h*hd : (h+1)*hd]
						out := append([]float64(nil), x...) // channels ≥ rd pass through
						if style == "neox" {
							// x·cos + rotate_half(x)·sin over the first rd channels, with
							// emb = cat(freqs, freqs) and rotate_half(x) = cat(−x₂, x₁).
							half := rd / 2
							for i := 0; i < rd; i++ {
								f := p * math.Pow(theta, -2*float64(i%half)/float64(rd))
								var rh float64
								if i < half {
									rh = -x[i+half]
								} else {
									rh = x[i-half]
								}
								out[i] = x[i]*math.Cos(f) + rh*math.Sin(f)
							}
						} else {
							for j := 0; j < rd/2; j++ {
								f := p * math.Pow(theta, -2*float64(j)/float64(rd))
								c, s := math.Cos(f), math.Sin(f)
								out[2*j] = x[2*j]*c - x[2*j+1]*s
								out[2*j+1] = x[2*j+1]*c + x[2*j]*s
							}
						}
						want = append(want, out...)
					}
				}
				if e := maxRel(got, want); !tolerance.Within(t, e, tol) {
					t.Errorf("max relative error %.3g > %g", e, tol)
				}
				for i := range got { // pass-through channels are copied exactly
					if i%hd >= rd && float64(got[i]) != want[i] {
						t.Fatalf("channel %d changed: %v, want %v", i%hd, got[i], want[i])
					}
				}
			})
		}
	}
}

// TestRoPEInvFreq checks the f32 inverse frequencies against float64: the
// f32 ones are within an f32 rounding or two of the exact values.
func TestRoPEInvFreq(t *testing.T) {
	for _, tc := range []struct {
		theta float64
		d     int
	}{{10000, 64}, {1e6, 128}, {5e6, 128}, {1e4, 32}} {
		inv := ropeInvFreq(tc.theta, tc.d)
		for j, got := range inv {
			want := math.Pow(tc.theta, -float64(2*j)/float64(tc.d))
			if math.Abs(float64(got)-want) > 3e-7*want {
				t.Errorf("theta %g d %d: inv_freq[%d] = %v, want %v", tc.theta, tc.d, j, got, want)
			}
		}
	}
}

// TestLowPrecisionWeights checks that bf16 and f16 weights give exactly the
// results of their f32 upcast, through the embedding, the norm weight and
// both matmul paths (decode rows and tiles).
func TestLowPrecisionWeights(t *testing.T) {
	const V, H, N = 50, 35, 70
	for _, dt := range []ir.DType{ir.BF16, ir.F16} {
		for _, T := range []int{1, 2, 9, 100} {
			t.Run(fmt.Sprintf("%v/T=%d", dt, T), func(t *testing.T) {
				ws := newWeightSet(3)
				plan := func(dt ir.DType) *ir.Plan {
					b := ir.NewBuilder("lowp")
					tok := b.Input("tokens", ir.I32, ir.T)
					x := b.Embedding(ws.add(b, "emb", dt, 1, V, H), tok)
					x = b.RMSNorm(x, ws.add(b, "norm", dt, 1, H), 1e-6, false)
					b.Output("out", b.MatMul(x, ws.add(b, "w", dt, 0.5, N, H)))
					return finish(t, b)
				}
				pl, pu := plan(dt), plan(ir.F32)
				low := newBackend(t, pl, ws.weights(pl), Options{Threads: 3})
				up := newBackend(t, pu, ws.weights(pu), Options{Threads: 3})
				bt := makeBatch(chunk{tokens: randTokens(ws.rng, T, V)})
				step(t, low, bt)
				step(t, up, bt)
				a, _ := output(t, low, "out")
				c, _ := output(t, up, "out")
				for i := range a {
					if math.Float32bits(a[i]) != math.Float32bits(c[i]) {
						t.Fatalf("element %d: %v with %v weights, %v with their f32 upcast", i, a[i], dt, c[i])
					}
				}
			})
		}
	}
}

// TestUnalignedWeights feeds weight bytes at odd addresses (as an mmapped
// engine could) and expects the aligned results.
func TestUnalignedWeights(t *testing.T) {
	for _, dt := range []ir.DType{ir.F32, ir.BF16, ir.F16} {
		ws := newWeightSet(5)
		b := ir.NewBuilder("unaligned")
		tok := b.Input("tokens", ir.I32, ir.T)
		x := b.Embedding(ws.add(b, "emb", dt, 1, 9, 16), tok)
		b.Output("out", b.MatMul(x, ws.add(b, "w", dt, 1, 12, 16)))
		p := finish(t, b)
		aligned := ws.weights(p)
		odd := ws.weights(p)
		for i := range odd {
			buf := make([]byte, len(odd[i].Data)+1)
			copy(buf[1:], odd[i].Data)
			odd[i].Data = buf[1:]
		}
		bt := makeBatch(chunk{tokens: []int32{0, 3, 8, 1, 5}})
		var outs [2][]float32
		for i, w := range [][]Weight{aligned, odd} {
			be := newBackend(t, p, w, Options{})
			step(t, be, bt)
			outs[i], _ = output(t, be, "out")
		}
		if e := maxRel(outs[1], f64s(outs[0])); e != 0 {
			t.Errorf("%v: unaligned weights differ by %g", dt, e)
		}
	}
}

func randTokens(rng *rand.Rand, n, vocab int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(vocab))
	}
	return out
}

// f64 returns a weight's values as float64.
func (ws *weightSet) f64(name string) []float64 { return f64s(ws.vals[name]) }

// rows returns the rows of table name picked by ids, as float64.
func (ws *weightSet) rows(name string, ids []int32) [][]float64 {
	tab := ws.vals[name]
	n := len(tab) / ws.rowsOf(name)
	out := make([][]float64, len(ids))
	for i, id := range ids {
		out[i] = f64s(tab[int(id)*n : (int(id)+1)*n])
	}
	return out
}

func (ws *weightSet) rowsOf(name string) int { return ws.shape[name][0] }

func flat(x [][]float64) []float64 {
	var out []float64
	for _, r := range x {
		out = append(out, r...)
	}
	return out
}

func mapRows(x [][]float64, f func(float64) float64) []float64 {
	out := flat(x)
	for i, v := range out {
		out[i] = f(v)
	}
	return out
}

func zipRows(x, y [][]float64, f func(a, b float64) float64) []float64 {
	a, b := flat(x), flat(y)
	for i := range a {
		a[i] = f(a[i], b[i])
	}
	return a
}

func refRMSNorm(x [][]float64, w []float64, eps float64, unit bool) []float64 {
	var out []float64
	for _, r := range x {
		var ss float64
		for _, v := range r {
			ss += v * v
		}
		inv := 1 / math.Sqrt(ss/float64(len(r))+eps)
		for i, v := range r {
			g := w[i]
			if unit {
				g++
			}
			out = append(out, v*inv*g)
		}
	}
	return out
}

// refMatMul returns x·Wᵀ for W [n, len(x[0])].
func refMatMul(x [][]float64, w []float64, n int) []float64 {
	var out []float64
	for _, r := range x {
		k := len(r)
		for j := 0; j < n; j++ {
			var s float64
			for i, v := range r {
				s += v * w[j*k+i]
			}
			out = append(out, s)
		}
	}
	return out
}
