package image

import "image"

// PIL decodes JPEG with libjpeg(-turbo), whose defaults differ from Go's
// image/jpeg after the IDCT: chroma is upsampled with the "fancy" triangle
// filter (not replicated) and YCbCr is converted with libjpeg's fixed-point
// tables. ycbcrToRGB reproduces both, so only IDCT rounding differs.

const (
	jScale   = 16
	jOneHalf = 1 << (jScale - 1)
)

func jFix(x float64) int32 { return int32(x*(1<<jScale) + 0.5) }

var jCrR, jCbB, jCrG, jCbG [256]int32

func init() {
	for i := range 256 {
		x := int32(i - 128)
		jCrR[i] = (jFix(1.40200)*x + jOneHalf) >> jScale
		jCbB[i] = (jFix(1.77200)*x + jOneHalf) >> jScale
		jCrG[i] = -jFix(0.71414) * x
		jCbG[i] = -jFix(0.34414)*x + jOneHalf
	}
}

func clamp8(v int32) uint8 { return uint8(min(max(v, 0), 255)) }

// ycbcrToRGB converts a decoded JPEG; ok is false for subsampling ratios it
// does not handle (the caller falls back to Go's conversion).
func ycbcrToRGB(m *image.YCbCr) (*RGB, bool) {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	var cb, cr []uint8 // full-resolution chroma, w·h
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		cb, cr = make([]uint8, w*h), make([]uint8, w*h)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				i := m.COffset(b.Min.X+x, b.Min.Y+y)
				cb[y*w+x], cr[y*w+x] = m.Cb[i], m.Cr[i]
			}
		}
	case image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio422:
		v2 := m.SubsampleRatio == image.YCbCrSubsampleRatio420
		if b.Min.X != 0 || b.Min.Y != 0 {
			return nil, false
		}
		cw := (w + 1) / 2
		ch := h
		if v2 {
			ch = (h + 1) / 2
		}
		cb = fancyUpsample(m.Cb, m.CStride, cw, ch, w, h, v2)
		cr = fancyUpsample(m.Cr, m.CStride, cw, ch, w, h, v2)
	default:
		return nil, false
	}
	out := &RGB{Width: w, Height: h, Pix: make([]uint8, w*h*3)}
	for y := 0; y < h; y++ {
		yrow := m.Y[(y)*m.YStride:]
		for x := 0; x < w; x++ {
			Y := int32(yrow[x])
			u, v := cb[y*w+x], cr[y*w+x]
			p := out.Pix[(y*w+x)*3:]
			p[0] = clamp8(Y + jCrR[v])
			p[1] = clamp8(Y + (jCbG[u]+jCrG[v])>>jScale)
			p[2] = clamp8(Y + jCbB[u])
		}
	}
	return out, true
}

// fancyUpsample doubles a chroma plane horizontally (and vertically when
// v2) with libjpeg's h2v1/h2v2 fancy upsampling, cropped to w×h.
func fancyUpsample(c []uint8, stride, cw, ch, w, h int, v2 bool) []uint8 {
	out := make([]uint8, w*h)
	row := make([]int32, cw) // vertical sums for one output row
	full := make([]uint8, 2*cw)
	for y := 0; y < h; y++ {
		if v2 {
			r := y / 2
			far := r - 1
			if y%2 == 1 {
				far = r + 1
			}
			far = min(max(far, 0), ch-1)
			for i := range cw {
				row[i] = 3*int32(c[r*stride+i]) + int32(c[far*stride+i])
			}
			// h2v2: sums are ×4; the result carries a ×16 scale.
			if cw == 1 {
				full[0] = uint8((row[0]*4 + 8) >> 4)
				full[1] = uint8((row[0]*4 + 7) >> 4)
			} else {
				full[0] = uint8((row[0]*4 + 8) >> 4)
				full[1] = uint8((row[0]*3 + row[1] + 7) >> 4)
				for i := 1; i < cw-1; i++ {
					full[2*i] = uint8((row[i]*3 + row[i-1] + 8) >> 4)
					full[2*i+1] = uint8((row[i]*3 + row[i+1] + 7) >> 4)
				}
				last := cw - 1
				full[2*last] = uint8((row[last]*3 + row[last-1] + 8) >> 4)
				full[2*last+1] = uint8((row[last]*4 + 7) >> 4)
			}
		} else {
			src := c[y*stride:]
			if cw == 1 {
				full[0], full[1] = src[0], src[0]
			} else {
				full[0] = src[0]
				full[1] = uint8((int32(src[0])*3 + int32(src[1]) + 2) >> 2)
				for i := 1; i < cw-1; i++ {
					t := int32(src[i]) * 3
					full[2*i] = uint8((t + int32(src[i-1]) + 1) >> 2)
					full[2*i+1] = uint8((t + int32(src[i+1]) + 2) >> 2)
				}
				last := cw - 1
				full[2*last] = uint8((int32(src[last])*3 + int32(src[last-1]) + 1) >> 2)
				full[2*last+1] = src[last]
			}
		}
		copy(out[y*w:(y+1)*w], full[:w])
	}
	return out
}
