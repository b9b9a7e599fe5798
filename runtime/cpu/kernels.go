package cpu

import (
	"fmt"
	"math"
)

// kernel is one compiled step of the plan.
type kernel interface {
	exec(b *Backend) error
}

// embeddingK gathers rows of a table: ids i32 [...] -> y [..., H] with table [V, H].
type embeddingK struct {
	table matrix
	ids   tensor
	y     []float32
	n     int
}

func (k *embeddingK) exec(b *Backend) error {
	k.n = b.elems(k.ids.shape)
	for i, id := range k.ids.i32[:k.n] {
		if id < 0 || int(id) >= k.table.rows {
			return fmt.Errorf("embedding: id %d at row %d is outside the table of %d rows", id, i, k.table.rows)
		}
	}
	b.pool.do(k, k.n, b.pool.grainFor(k.n, 16))
	return nil
}

func (k *embeddingK) run(lo, hi, _ int) {
	h := k.table.cols
	for i := lo; i < hi; i++ {
		k.table.rowInto(int(k.ids.i32[i]), k.y[i*h:(i+1)*h])
	}
}

// rmsNormK normalises each row of x over its last dim d:
// y = x·(1/sqrt(mean(x²)+eps)) · w, with w already 1+w for unit_offset.
// The sum of squares is accumulated in f64 (closer to PyTorch's vectorised f32
// reduction than a sequential f32 sum); mean, eps, the reciprocal square root
// and both products are f32, as in transformers.
type rmsNormK struct {
	x   tensor
	w   []float32
	y   []float32
	eps float32
	d   int
}

func (k *rmsNormK) exec(b *Backend) error {
	rows := b.elems(k.x.shape) / k.d
	b.pool.do(k, rows, b.pool.grainFor(rows, max(1, 4096/k.d)))
	return nil
}

func (k *rmsNormK) run(lo, hi, _ int) {
	d := k.d
	w := k.w[:d]
	for r := lo; r < hi; r++ {
		x, y := k.x.f32[r*d:(r+1)*d], k.y[r*d:(r+1)*d]
		var ss float64
		for _, v := range x {
			ss += float64(v) * float64(v)
		}
		mean := float32(ss / float64(d))
		inv := float32(1 / math.Sqrt(float64(mean+k.eps)))
		for i, v := range x {
			y[i] = float32(v*inv) * w[i]
		}
	}
}

// Elementwise ops.
const (
	ewSiLU = iota
	ewSigmoid
	ewMul
	ewAdd
)

// elementwiseK applies a unary (a) or binary (a, b) op to every element.
// SiLU and sigmoid are evaluated in f64 and rounded once to f32.
type elementwiseK struct {
	op   int
	a, b tensor
	y    []float32
}

func (k *elementwiseK) exec(b *Backend) error {
	n := b.elems(k.a.shape)
	b.pool.do(k, n, b.pool.grainFor(n, 4096))
	return nil
}

func (k *elementwiseK) run(lo, hi, _ int) {
	a, y := k.a.f32[lo:hi], k.y[lo:hi]
	switch k.op {
	case ewSiLU:
		for i, v := range a {
			x := float64(v)
			y[i] = float32(x / (1 + math.Exp(-x)))
		}
	case ewSigmoid:
		for i, v := range a {
			y[i] = float32(1 / (1 + math.Exp(-float64(v))))
		}
	case ewMul:
		b := k.b.f32[lo:hi]
		for i, v := range a {
			y[i] = v * b[i]
		}
	case ewAdd:
		b := k.b.f32[lo:hi]
		for i, v := range a {
			y[i] = v + b[i]
		}
	}
}

// gatherRowsK keeps some rows of x: x [T, ...], rows i32 [R] -> y [R, ...].
// It copies f32 or i32 rows alike.
type gatherRowsK struct {
	x, rows tensor
	y       tensor
	row     int // elements per row
}

func (k *gatherRowsK) exec(b *Backend) error {
	n := b.elems(k.rows.shape)
	rows := k.rows.i32[:n]
	for i, r := range rows {
		if r < 0 || int(r) >= b.t {
			return fmt.Errorf("gather_rows: row %d at %d is outside the step's %d rows", r, i, b.t)
		}
	}
	w := k.row
	for i, r := range rows {
		if k.x.f32 != nil {
			copy(k.y.f32[i*w:(i+1)*w], k.x.f32[int(r)*w:(int(r)+1)*w])
		} else {
			copy(k.y.i32[i*w:(i+1)*w], k.x.i32[int(r)*w:(int(r)+1)*w])
		}
	}
	return nil
}
