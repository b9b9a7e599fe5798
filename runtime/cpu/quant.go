package cpu

import "github.com/inference-pio/pio/runtime/cpu/kern"

// qmatrix is a group-quantized weight [rows, cols] (see package kern for the
// formats): codes row-major, one f32 scale per group of each row.
type qmatrix struct {
	rows, cols, group int
	format            qformat
	i8                []int8 // qInt8
	u8                []byte // qInt4 (cols/2 bytes per row), qFP8
	scale             []float32
}

type qformat uint8

const (
	qInt8 qformat = iota + 1
	qInt4
	qFP8
)

// dots writes y[n] = xr·W[n] for n in [n0, n1), reading the codes in place.
func (q *qmatrix) dots(xr, y []float32, n0, n1 int) {
	K, G := q.cols, q.group
	gs := K / G
	switch q.format {
	case qInt8:
		for n := n0; n < n1; n++ {
			y[n] = kern.DotQ8(xr, q.i8[n*K:(n+1)*K], q.scale[n*gs:(n+1)*gs], G)
		}
	case qInt4:
		for n := n0; n < n1; n++ {
			y[n] = kern.DotQ4(xr, q.u8[n*K/2:(n+1)*K/2], q.scale[n*gs:(n+1)*gs], G)
		}
	case qFP8:
		for n := n0; n < n1; n++ {
			y[n] = kern.DotF8(xr, q.u8[n*K:(n+1)*K], q.scale[n*gs:(n+1)*gs], G)
		}
	}
}

// rowInto decodes row n into dst[:cols] as f32.
func (q *qmatrix) rowInto(n int, dst []float32) {
	K, G := q.cols, q.group
	gs := K / G
	s := q.scale[n*gs : (n+1)*gs]
	switch q.format {
	case qInt8:
		kern.DequantQ8(dst[:K], q.i8[n*K:(n+1)*K], s, G)
	case qInt4:
		kern.DequantQ4(dst[:K], q.u8[n*K/2:(n+1)*K/2], s, G)
	case qFP8:
		kern.DequantF8(dst[:K], q.u8[n*K:(n+1)*K], s, G)
	}
}
