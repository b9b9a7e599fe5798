package image

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/gif" // registered for image.Decode; HF (PIL) opens GIFs too
	"image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"
)

// RGB is an 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
type RGB struct {
	Width, Height int
	Pix           []uint8 // len = Width·Height·3
}

// At returns the channel c (0 R, 1 G, 2 B) of the pixel at (x, y).
func (m *RGB) At(x, y, c int) uint8 { return m.Pix[(y*m.Width+x)*3+c] }

// Limits bound what Decode accepts, so a hostile file cannot exhaust memory.
type Limits struct {
	MaxBytes  int // encoded size
	MaxPixels int // decoded width·height
	MaxSide   int // decoded width or height
}

// DefaultLimits accepts files up to 64 MiB and images up to 8192×8192.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 64 << 20, MaxPixels: 8192 * 8192, MaxSide: 16384}
}

// ErrTooLarge is wrapped by the errors of images over a Limits bound.
var ErrTooLarge = errors.New("image too large")

// Decode reads a JPEG, PNG, WebP or GIF file and converts it to RGB the way
// PIL's convert("RGB") does: alpha is dropped (not composited), grey is
// replicated, palettes are looked up, 16-bit samples keep their high byte.
// A JPEG's EXIF orientation is applied (as transformers' load_image does).
// It checks the header against lim before decoding pixels.
func Decode(data []byte, lim Limits) (img *RGB, err error) {
	if lim.MaxBytes > 0 && len(data) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes (limit %d)", ErrTooLarge, len(data), lim.MaxBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image: not a decodable JPEG, PNG, WebP or GIF: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("image: empty %s image (%d×%d)", format, cfg.Width, cfg.Height)
	}
	if lim.MaxSide > 0 && (cfg.Width > lim.MaxSide || cfg.Height > lim.MaxSide) {
		return nil, fmt.Errorf("%w: %s %d×%d (side limit %d)", ErrTooLarge, format, cfg.Width, cfg.Height, lim.MaxSide)
	}
	if lim.MaxPixels > 0 && int64(cfg.Width)*int64(cfg.Height) > int64(lim.MaxPixels) {
		return nil, fmt.Errorf("%w: %s %d×%d (pixel limit %d)", ErrTooLarge, format, cfg.Width, cfg.Height, lim.MaxPixels)
	}
	// Third-party decoders have panicked on hostile input before; never let one escape.
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("image: corrupt %s data (decoder panic: %v)", format, r)
		}
	}()
	var m image.Image
	if format == "jpeg" {
		m, err = jpeg.Decode(bytes.NewReader(data))
	} else {
		m, _, err = image.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("image: corrupt %s data: %w", format, err)
	}
	var out *RGB
	if yc, ok := m.(*image.YCbCr); ok && format == "jpeg" {
		out, ok = ycbcrToRGB(yc)
		if !ok {
			out = toRGB(m)
		}
	} else {
		out = toRGB(m)
	}
	if format == "jpeg" {
		out = orient(out, jpegOrientation(data))
	}
	return out, nil
}

func toRGB(m image.Image) *RGB {
	b := m.Bounds()
	w, h := b.Dx(), b.Dy()
	out := &RGB{Width: w, Height: h, Pix: make([]uint8, w*h*3)}
	p := out.Pix
	switch s := m.(type) {
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride:]
			for x := 0; x < w; x++ {
				copy(p[(y*w+x)*3:(y*w+x)*3+3], row[x*4:x*4+3])
			}
		}
	case *image.RGBA: // opaque images decode as RGBA; alpha < 255 is un-premultiplied below
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride:]
			for x := 0; x < w; x++ {
				if a := row[x*4+3]; a == 255 {
					copy(p[(y*w+x)*3:(y*w+x)*3+3], row[x*4:x*4+3])
				} else {
					c := color.NRGBAModel.Convert(s.RGBAAt(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
					p[(y*w+x)*3], p[(y*w+x)*3+1], p[(y*w+x)*3+2] = c.R, c.G, c.B
				}
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := s.Pix[y*s.Stride:]
			for x := 0; x < w; x++ {
				v := row[x]
				p[(y*w+x)*3], p[(y*w+x)*3+1], p[(y*w+x)*3+2] = v, v, v
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := color.NRGBA64Model.Convert(m.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA64)
				i := (y*w + x) * 3
				p[i], p[i+1], p[i+2] = uint8(c.R>>8), uint8(c.G>>8), uint8(c.B>>8)
			}
		}
	}
	return out
}
