package image

import (
	"errors"
	"fmt"
	"math"
)

// Options are the preprocessing settings of preprocessor_config.json.
type Options struct {
	MinPixels, MaxPixels int // smart_resize bounds on the resized h̄·w̄ ("size": shortest_edge, longest_edge)
	PatchSize            int // 16
	MergeSize            int // 2: patches merged 2×2 into one LLM token
	TemporalPatchSize    int // 2: a still image is repeated to 2 frames
	Mean, Std            [3]float32
	Limits               Limits // on each decoded file
	MaxImages            int    // per request
}

// DefaultOptions are Qwen3-VL-2B-Instruct's: min 256², max 4096², patch 16,
// merge 2, temporal 2, mean = std = 0.5; at most 16 images a request.
func DefaultOptions() Options {
	return Options{
		MinPixels: 65536, MaxPixels: 16777216,
		PatchSize: 16, MergeSize: 2, TemporalPatchSize: 2,
		Mean: [3]float32{0.5, 0.5, 0.5}, Std: [3]float32{0.5, 0.5, 0.5},
		Limits: DefaultLimits(), MaxImages: 16,
	}
}

func (o Options) check() error {
	if o.PatchSize <= 0 || o.MergeSize <= 0 || o.TemporalPatchSize <= 0 {
		return fmt.Errorf("image: patch (%d), merge (%d) and temporal (%d) sizes must be positive", o.PatchSize, o.MergeSize, o.TemporalPatchSize)
	}
	if o.MinPixels < 0 || o.MaxPixels <= 0 || o.MinPixels > o.MaxPixels {
		return fmt.Errorf("image: bad pixel bounds min %d, max %d", o.MinPixels, o.MaxPixels)
	}
	for c := range 3 {
		if !(o.Std[c] != 0) {
			return fmt.Errorf("image: std[%d] is zero", c)
		}
	}
	return nil
}

// ErrAspect is wrapped by the error of an image whose sides differ more than 200:1.
var ErrAspect = errors.New("aspect ratio over 200")

// SmartResize returns the size (h̄, w̄) HF's smart_resize picks: both
// multiples of factor, h̄·w̄ within [minPixels, maxPixels], aspect kept as
// closely as possible. Python's round (half to even) is reproduced.
func SmartResize(h, w, factor, minPixels, maxPixels int) (int, int, error) {
	if h <= 0 || w <= 0 || factor <= 0 {
		return 0, 0, fmt.Errorf("image: bad size %d×%d or factor %d", h, w, factor)
	}
	if float64(max(h, w))/float64(min(h, w)) > 200 {
		return 0, 0, fmt.Errorf("image: %d×%d: %w", w, h, ErrAspect)
	}
	f := float64(factor)
	hb := int(math.RoundToEven(float64(h)/f)) * factor
	wb := int(math.RoundToEven(float64(w)/f)) * factor
	switch {
	case hb*wb > maxPixels:
		beta := math.Sqrt(float64(h) * float64(w) / float64(maxPixels))
		hb = max(factor, int(math.Floor(float64(h)/beta/f))*factor)
		wb = max(factor, int(math.Floor(float64(w)/beta/f))*factor)
	case hb*wb < minPixels:
		beta := math.Sqrt(float64(minPixels) / (float64(h) * float64(w)))
		hb = int(math.Ceil(float64(h)*beta/f)) * factor
		wb = int(math.Ceil(float64(w)*beta/f)) * factor
	}
	return hb, wb, nil
}

// Pixels is one preprocessed image: the vision tower's input.
type Pixels struct {
	// Values is pixel_values, [N, C·T·P·P] row-major with N = GridT·GridH·GridW;
	// rows in 2×2 merge-block order, each row ordered (channel, frame, py, px).
	Values              []float32
	GridT, GridH, GridW int // grid_thw, in patches
	Height, Width       int // resized size in pixels
}

// Rows is the number of patch rows N.
func (p *Pixels) Rows() int { return p.GridT * p.GridH * p.GridW }

// RowSize is the width of one row, C·T·P·P (1536 for Qwen3-VL).
func (p *Pixels) RowSize() int { return len(p.Values) / max(1, p.Rows()) }

// Preprocess resizes, normalises and patchifies a decoded image.
func Preprocess(m *RGB, o Options) (*Pixels, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if m == nil || m.Width <= 0 || m.Height <= 0 || len(m.Pix) != m.Width*m.Height*3 {
		return nil, fmt.Errorf("image: empty or inconsistent RGB image")
	}
	f := o.PatchSize * o.MergeSize
	h, w, err := SmartResize(m.Height, m.Width, f, o.MinPixels, o.MaxPixels)
	if err != nil {
		return nil, err
	}
	r := Resize(m, w, h)
	// torchvision normalises in f32 with mean and std rescaled by 255: (x − 255·mean) / (255·std).
	var mean, std [3]float32
	for c := range 3 {
		mean[c] = float32(float64(o.Mean[c]) * 255)
		std[c] = float32(float64(o.Std[c]) * 255)
	}
	P, M, T := o.PatchSize, o.MergeSize, o.TemporalPatchSize
	gh, gw := h/P, w/P
	row := 3 * T * P * P
	px := &Pixels{Values: make([]float32, gh*gw*row), GridT: 1, GridH: gh, GridW: gw, Height: h, Width: w}
	n := 0
	for br := 0; br < gh/M; br++ {
		for bc := 0; bc < gw/M; bc++ {
			for ir := 0; ir < M; ir++ {
				for ic := 0; ic < M; ic++ {
					y0, x0 := (br*M+ir)*P, (bc*M+ic)*P
					dst := px.Values[n*row : (n+1)*row]
					k := 0
					for c := range 3 {
						for range T {
							for y := y0; y < y0+P; y++ {
								src := r.Pix[(y*w+x0)*3:]
								for x := 0; x < P; x++ {
									dst[k] = (float32(src[x*3+c]) - mean[c]) / std[c]
									k++
								}
							}
						}
					}
					n++
				}
			}
		}
	}
	return px, nil
}

// Process decodes an image file and preprocesses it.
func Process(data []byte, o Options) (*Pixels, error) {
	m, err := Decode(data, o.Limits)
	if err != nil {
		return nil, err
	}
	return Preprocess(m, o)
}

// ProcessAll preprocesses the images of one request, in order; it refuses
// more than o.MaxImages images. Errors name the image by its index.
func ProcessAll(files [][]byte, o Options) ([]*Pixels, error) {
	if o.MaxImages > 0 && len(files) > o.MaxImages {
		return nil, fmt.Errorf("image: %d images in one request (limit %d)", len(files), o.MaxImages)
	}
	out := make([]*Pixels, len(files))
	for i, b := range files {
		p, err := Process(b, o)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		out[i] = p
	}
	return out, nil
}
