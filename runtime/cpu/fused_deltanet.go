package cpu

import (
	"math"

	"github.com/inference-pio/pio/ir"
)

// Kernels of the fused DeltaNet ops (ir/op_fused_deltanet.go). They reuse
// the unfused kernels' code, so a fused engine matches an unfused one.
func init() {
	builders[ir.OpDeltaNetCore] = buildDeltaNetCore
	builders[ir.OpDeltaNetPrep] = buildDeltaNetPrep
}

// deltaNetPrepK is deltanet_prep: conv1dK over the q ‖ k ‖ v channels
// gathered in place from the projected row (col maps a conv channel to its
// column of x), output rows of C + 2·Hv, then the decay and sigmoid gates
// (as decayK and the sigmoid kernel compute them) into the last 2·Hv.
type deltaNetPrepK struct {
	conv       conv1dK
	x          tensor
	col        []int // [C]: conv channel -> column of x
	a, b       []int // [Hv]: value head -> column of a, of b
	alog, dtb  []float32
	y          []float32
	width, row int // x's row, y's row
	hv         int
}

func buildDeltaNetPrep(b *Backend, s ir.Step, y tensor) (kernel, error) {
	x, w := b.operand(s.Args[0]), b.operand(s.Args[1])
	at := s.Attr()
	hk, hv, dk, dv, c := ir.DeltaNetPrepLayout(at)
	kl := int(w.shape.Last())
	st, err := b.stateCache(at.Int("cache"), ir.Sh(ir.Dim(c), ir.Dim(kl-1)))
	if err != nil {
		return nil, err
	}
	r := hv / hk
	grp := 2*dk + 2*r*dv
	qkvz, ba := int(at.Int("qkvz")), int(at.Int("ba"))
	k := &deltaNetPrepK{x: x, alog: b.operand(s.Args[2]).f32, dtb: b.operand(s.Args[3]).f32, y: y.f32,
		width: int(x.shape[1]), row: c + 2*hv, hv: hv}
	for j := range hk * dk { // q
		k.col = append(k.col, qkvz+(j/dk)*grp+j%dk)
	}
	for j := range hk * dk { // k
		k.col = append(k.col, qkvz+(j/dk)*grp+dk+j%dk)
	}
	for j := range hv * dv { // v, value heads of key head j/(r·dv) contiguous
		k.col = append(k.col, qkvz+(j/(r*dv))*grp+2*dk+j%(r*dv))
	}
	for h := range hv {
		k.b = append(k.b, ba+(h/r)*2*r+h%r)
		k.a = append(k.a, ba+(h/r)*2*r+r+h%r)
	}
	k.conv = conv1dK{w: w.f32, state: st.entries[0], c: c, k: kl, silu: true,
		runs: make([]seqRun, 0, b.opt.MaxSeqs), at: newSlotPositions(b.opt.MaxSeqs)}
	return k, nil
}

func (k *deltaNetPrepK) exec(b *Backend) error {
	k.conv.runs = runsOf(b, k.conv.runs)
	if err := k.conv.at.check(k.conv.runs); err != nil {
		return err
	}
	b.pool.do(k, k.conv.c, b.pool.grainFor(k.conv.c, 64))
	k.conv.at.advance(k.conv.runs)
	c, x := k.conv.c, k.x.f32
	for t := 0; t < b.t; t++ {
		xr, yr := x[t*k.width:(t+1)*k.width], k.y[t*k.row:(t+1)*k.row]
		for h := 0; h < k.hv; h++ {
			v := xr[k.a[h]] + k.dtb[h]
			sp := v
			if v <= 20 {
				sp = float32(math.Log1p(math.Exp(float64(v))))
			}
			yr[c+h] = -exp32(k.alog[h]) * sp
			yr[c+k.hv+h] = float32(1 / (1 + math.Exp(-float64(xr[k.b[h]]))))
		}
	}
	return nil
}

// run is conv1dK.run with x read through col and y rows of k.row.
func (k *deltaNetPrepK) run(lo, hi, _ int) {
	C, K := k.conv.c, k.conv.k
	h := K - 1
	var hist, next [maxConvKernel]float32
	for ch := lo; ch < hi; ch++ {
		w := k.conv.w[ch*K : (ch+1)*K]
		col := k.col[ch]
		for _, r := range k.conv.runs {
			st := k.conv.state[(r.slot*C+ch)*h : (r.slot*C+ch+1)*h]
			if r.fresh {
				clear(hist[:h])
			} else {
				copy(hist[:h], st)
			}
			in := func(i int) float32 {
				if i < 0 {
					return hist[h+i]
				}
				return k.x.f32[(r.t0+i)*k.width+col]
			}
			for i := 0; i < r.n; i++ {
				var acc float32
				for j := 0; j < K; j++ {
					acc += w[j] * in(i-h+j)
				}
				k.y[(r.t0+i)*k.row+ch] = silu32(acc)
			}
			for m := 0; m < h; m++ {
				next[m] = in(r.n - h + m)
			}
			copy(st, next[:h])
		}
	}
}

// deltaNetCoreK is deltanet_core: the gated delta rule (deltaRuleK, into
// y), then per value-head row y = rms_norm(y, w) ⊙ silu(z), computed as
// rms_norm, silu and mul compute it.
type deltaNetCoreK struct {
	rule *deltaRuleK
	z    tensor
	w    []float32
	y    []float32
	eps  float32
	d    int
	// zrow >= 0: z is read in place from the projected row (zwidth wide),
	// its qkvz block at zrow in groups of grp, z of a key head at zat + r·dv.
	zrow, zwidth, grp, zat, r int
}

func buildDeltaNetCore(b *Backend, s ir.Step, y tensor) (kernel, error) {
	rs := s
	rs.Args = s.Args[:5]
	rk, err := buildGatedDeltaRule(b, rs, y)
	if err != nil {
		return nil, err
	}
	rule := rk.(*deltaRuleK)
	k := &deltaNetCoreK{rule: rule, z: b.operand(s.Args[5]), w: b.operand(s.Args[6]).f32, y: y.f32,
		eps: float32(s.Attr().Float("eps")), d: rule.dv, zrow: -1}
	if off := s.Attr().Int("zrow"); off >= 0 {
		k.zrow, k.zwidth = int(off), int(k.z.shape[1])
		k.r = rule.hv / rule.hk
		k.grp = 2*rule.dk + 2*k.r*rule.dv
		k.zat = 2 * rule.dk
	}
	return k, nil
}

// zOf returns row r's z (r = t·Hv + h).
func (k *deltaNetCoreK) zOf(r int) []float32 {
	d := k.d
	if k.zrow < 0 {
		return k.z.f32[r*d : (r+1)*d]
	}
	hv := k.rule.hv
	t, h := r/hv, r%hv
	o := t*k.zwidth + k.zrow + (h/k.r)*k.grp + k.zat + k.r*d + (h%k.r)*d
	return k.z.f32[o : o+d]
}

func (k *deltaNetCoreK) exec(b *Backend) error {
	if err := k.rule.exec(b); err != nil {
		return err
	}
	rows := b.t * k.rule.hv
	b.pool.do(k, rows, b.pool.grainFor(rows, max(1, 4096/k.d)))
	return nil
}

func (k *deltaNetCoreK) run(lo, hi, _ int) {
	d := k.d
	w := k.w[:d]
	for r := lo; r < hi; r++ {
		y, z := k.y[r*d:(r+1)*d], k.zOf(r)
		var ss float64
		for _, v := range y {
			ss += float64(v) * float64(v)
		}
		mean := float32(ss / float64(d))
		inv := float32(1 / math.Sqrt(float64(mean+k.eps)))
		for i, v := range y {
			x := float64(z[i])
			y[i] = (float32(v*inv) * w[i]) * float32(x/(1+math.Exp(-x)))
		}
	}
}
