package cpu

import (
	"fmt"
	"unsafe"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime/cpu/kern"
)

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

func init() { builders[ir.OpMatMulQ] = buildMatMulQ }

// buildMatMulQ compiles matmul_q (x, codes, scales): the codes and scales
// must be engine weights; they are read in place, never dequantized whole.
func buildMatMulQ(b *Backend, s ir.Step, y tensor) (kernel, error) {
	if s.Args[1].Kind != ir.RefWeight || s.Args[2].Kind != ir.RefWeight {
		return nil, fmt.Errorf("codes and scales must be weights")
	}
	x := b.operand(s.Args[0])
	codes, scales := b.weights[s.Args[1].Index], b.weights[s.Args[2].Index]
	K, N, G := int(x.shape.Last()), codes.rows, int(s.Attr().Int("group"))
	if G <= 0 || G%kern.QBlock != 0 || K%G != 0 || scales.dt != ir.F32 || len(scales.f32) != N*(K/G) {
		return nil, fmt.Errorf("group %d, K %d, scales %v[%d]: inconsistent", G, K, scales.dt, len(scales.f32))
	}
	q := &qmatrix{rows: N, cols: K, group: G, scale: scales.f32}
	want := N * K
	switch f := s.Attr().String("format"); {
	case f == "int8" && codes.dt == ir.I8:
		q.format = qInt8
		if len(codes.u8) > 0 {
			q.i8 = unsafe.Slice((*int8)(unsafe.Pointer(&codes.u8[0])), len(codes.u8))
		}
	case f == "int4" && codes.dt == ir.U8:
		q.format, q.u8, want = qInt4, codes.u8, N*K/2
	case f == "fp8" && codes.dt == ir.F8E4M3:
		q.format, q.u8 = qFP8, codes.u8
	default:
		return nil, fmt.Errorf("format %q with %v codes is not supported", f, codes.dt)
	}
	if len(codes.u8) != want {
		return nil, fmt.Errorf("codes hold %d bytes, want %d", len(codes.u8), want)
	}
	for i := range b.scratch {
		if len(b.scratch[i].w) < nTile*K {
			b.scratch[i].w = make([]float32, nTile*K)
		}
	}
	return &matmulK{b: b, x: x, q: q, y: y.f32, k: K, n: N}, nil
}
