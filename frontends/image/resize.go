package image

import "math"

// Resize scales m to w×h with the antialiased bicubic filter (a = −0.5,
// support widened by the scale when shrinking) in the integer arithmetic of
// torch's uint8 CPU path, which torchvision's resize and so HF's image
// processor use: per-axis weights normalised in float64, rounded to int16
// with the largest precision that keeps the largest weight below 2¹⁵, a
// horizontal pass into an 8-bit buffer, then a vertical pass; each output is
// (Σ w·x + 2^(p−1)) >> p clamped to [0, 255]. An axis whose size does not
// change is not filtered.
func Resize(m *RGB, w, h int) *RGB {
	out := m
	if w != m.Width {
		out = resizeAxis(out, w, true)
	}
	if h != m.Height {
		out = resizeAxis(out, h, false)
	}
	return out
}

// filterBank holds, for each output index, the first input index and the
// int16-rounded weights of the inputs it reads.
type filterBank struct {
	start []int
	taps  [][]int32
	prec  uint
}

func bicubicAA(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	if x < 1 {
		return ((a+2)*x-(a+3))*x*x + 1
	}
	if x < 2 {
		return ((a*x-5*a)*x+8*a)*x - 4*a
	}
	return 0
}

func newFilterBank(in, out int) filterBank {
	scale := float64(in) / float64(out)
	support, invscale := 2.0, 1.0
	if scale >= 1 {
		support, invscale = 2*scale, 1/scale
	}
	maxSize := int(math.Ceil(support))*2 + 1
	fb := filterBank{start: make([]int, out), taps: make([][]int32, out)}
	ws := make([][]float64, out)
	wmax := 0.0
	for i := 0; i < out; i++ {
		center := scale * (float64(i) + 0.5)
		xmin := max(int(center-support+0.5), 0) // C truncation: the operand is >= -0.5+... and clamped at 0
		xsize := min(int(center+support+0.5), in) - xmin
		xsize = max(0, min(xsize, maxSize))
		w := make([]float64, xsize)
		total := 0.0
		for j := range w {
			w[j] = bicubicAA((float64(j+xmin) - center + 0.5) * invscale)
			total += w[j]
		}
		if total != 0 {
			for j := range w {
				w[j] /= total
				wmax = max(wmax, w[j])
			}
		}
		fb.start[i], ws[i] = xmin, w
	}
	var p uint
	for p = 0; p < 22; p++ {
		if int(0.5+wmax*float64(int(1)<<(p+1))) >= 1<<15 {
			break
		}
	}
	fb.prec = p
	for i, w := range ws {
		t := make([]int32, len(w))
		for j, v := range w {
			v *= float64(int(1) << p)
			if v < 0 {
				t[j] = int32(int16(int(-0.5 + v)))
			} else {
				t[j] = int32(int16(int(0.5 + v)))
			}
		}
		fb.taps[i] = t
	}
	return fb
}

func (fb *filterBank) apply(i int, get func(k int) uint8) uint8 {
	acc := int32(1) << (fb.prec - 1)
	for j, t := range fb.taps[i] {
		acc += int32(get(fb.start[i]+j)) * t
	}
	acc >>= fb.prec
	return uint8(min(max(acc, 0), 255))
}

func resizeAxis(m *RGB, n int, horizontal bool) *RGB {
	if horizontal {
		fb := newFilterBank(m.Width, n)
		out := &RGB{Width: n, Height: m.Height, Pix: make([]uint8, n*m.Height*3)}
		for y := 0; y < m.Height; y++ {
			row := m.Pix[y*m.Width*3 : (y+1)*m.Width*3]
			for x := 0; x < n; x++ {
				for c := 0; c < 3; c++ {
					out.Pix[(y*n+x)*3+c] = fb.apply(x, func(k int) uint8 { return row[k*3+c] })
				}
			}
		}
		return out
	}
	fb := newFilterBank(m.Height, n)
	w := m.Width
	out := &RGB{Width: w, Height: n, Pix: make([]uint8, w*n*3)}
	for y := 0; y < n; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				out.Pix[(y*w+x)*3+c] = fb.apply(y, func(k int) uint8 { return m.Pix[(k*w+x)*3+c] })
			}
		}
	}
	return out
}
