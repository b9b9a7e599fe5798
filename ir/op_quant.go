package ir

import "fmt"

// The quantized-weights family (op numbers 160–191): weight-only,
// group-wise quantization made at build time (pioc build --quant).
//
// A quantized weight W [N, K] is two engine tensors: codes and f32 scales
// [N, K/group], one scale per group of `group` consecutive weights of a row
// (group a multiple of 32 that divides K), W[n, k] = scale[n, k/group] ·
// q[n, k]. Formats and code tensors:
//
//	int8  i8[N, K]       q in [-127, 127], scale = max|w|/127
//	int4  u8[N, K/2]     q in [-8, 7] stored q+8, two per byte; in each block
//	                     of 32 weights byte j holds weight j (low nibble) and
//	                     j+16 (high nibble); scale = max|w|/7
//	fp8   f8e4m3[N, K]   q an E4M3 value, scale = max|w|/448; no subnormal codes
//
// Activations stay f32: matmul_q computes x·Wᵀ without materialising W.
const (
	OpMatMulQ  Op = 160 // y = x·Wᵀ with W = scales ⊙ codes, group-wise (format, group)
	OpQuantize Op = 161 // build time only: codes or scales (attr part) of a float weight
)

// QuantFormats lists the formats matmul_q and quantize accept.
var QuantFormats = []string{"int8", "int4", "fp8"}

// QuantCodes returns the dtype and shape of the codes of an [n, k] weight
// in format f, or an error for an unknown format or an odd k for int4.
func QuantCodes(f string, n, k Dim) (DType, Shape, error) {
	switch f {
	case "int8":
		return I8, Sh(n, k), nil
	case "int4":
		if k%2 != 0 {
			return 0, nil, fmt.Errorf("int4 needs an even K, got %v", k)
		}
		return U8, Sh(n, k/2), nil
	case "fp8":
		return F8E4M3, Sh(n, k), nil
	}
	return 0, nil, fmt.Errorf("format must be int8, int4 or fp8, got %q", f)
}

func init() {
	defineOp(OpMatMulQ, OpInfo{Name: "matmul_q", Args: 3, Attrs: []AttrSpec{specFormat, specGroup}, Infer: inferMatMulQ, Pure: true,
		Comment: "y = x·Wᵀ, W[n,k] = scales[n, k/group]·codes[n,k] (int8 | int4 | fp8)"})
	defineOp(OpQuantize, OpInfo{Name: "quantize", Args: 1, Attrs: []AttrSpec{specFormat, specGroup, req("part", TString)}, Infer: inferQuantize, Pure: true,
		Comment: "build time: part=codes|scales of the group-wise quantization of a float [N, K] weight"})
}

var (
	specFormat = req("format", TString) // one of QuantFormats
	specGroup  = req("group", TInt)     // weights per scale: a multiple of 32 dividing K
)

// checkGroup checks that group is a positive multiple of 32 dividing k.
func checkGroup(at AttrReader, k Dim) (Dim, error) {
	g := Dim(at.Int("group"))
	if g <= 0 || g%32 != 0 || k%g != 0 {
		return 0, fmt.Errorf("group %d must be a positive multiple of 32 that divides K = %v", g, k)
	}
	return g, nil
}

func inferMatMulQ(a []*Value, at AttrReader) (DType, Shape, error) {
	x, codes, scales := a[0], a[1], a[2]
	if !isFloat(x) || len(x.Shape) == 0 || x.Shape.Last().Symbolic() {
		return 0, nil, fmt.Errorf("x must be float [..., K], got %v%v", x.DType, x.Shape)
	}
	if len(codes.Shape) != 2 || codes.Shape[0].Symbolic() {
		return 0, nil, fmt.Errorf("codes must be a static [N, ...] matrix, got %v", codes.Shape)
	}
	k, n := x.Shape.Last(), codes.Shape[0]
	dt, sh, err := QuantCodes(at.String("format"), n, k)
	if err != nil {
		return 0, nil, err
	}
	if codes.DType != dt || !codes.Shape.Equal(sh) {
		return 0, nil, fmt.Errorf("codes are %v%v, %s with K = %v needs %v%v", codes.DType, codes.Shape, at.String("format"), k, dt, sh)
	}
	g, err := checkGroup(at, k)
	if err != nil {
		return 0, nil, err
	}
	if scales.DType != F32 || !scales.Shape.Equal(Sh(n, k/g)) {
		return 0, nil, fmt.Errorf("scales must be f32[%v, %v], got %v%v", n, k/g, scales.DType, scales.Shape)
	}
	out := x.Shape.Clone()
	out[len(out)-1] = n
	return F32, out, nil
}

func inferQuantize(a []*Value, at AttrReader) (DType, Shape, error) {
	w := a[0]
	if !isFloat(w) || len(w.Shape) != 2 || w.Shape[0].Symbolic() || w.Shape[1].Symbolic() {
		return 0, nil, fmt.Errorf("weight must be a static float [N, K], got %v%v", w.DType, w.Shape)
	}
	n, k := w.Shape[0], w.Shape[1]
	dt, sh, err := QuantCodes(at.String("format"), n, k)
	if err != nil {
		return 0, nil, err
	}
	g, err := checkGroup(at, k)
	if err != nil {
		return 0, nil, err
	}
	switch at.String("part") {
	case "codes":
		return dt, sh, nil
	case "scales":
		return F32, Sh(n, k/g), nil
	}
	return 0, nil, fmt.Errorf("part must be codes or scales, got %q", at.String("part"))
}
