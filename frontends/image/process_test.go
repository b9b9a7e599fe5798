package image

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
)

const imagesDir = "../../testdata/images"

type goldenDoc struct {
	Images      []string `json:"images"`
	MinPixels   int      `json:"min_pixels"`
	MaxPixels   int      `json:"max_pixels"`
	SmartResize []struct {
		H, W      int
		MinPixels int    `json:"min_pixels"`
		MaxPixels int    `json:"max_pixels"`
		Out       []int  `json:"out"`
		Error     string `json:"error"`
	} `json:"smart_resize"`
}

func loadGolden(t *testing.T) (goldenDoc, *hf.SafetensorsFile) {
	t.Helper()
	var doc goldenDoc
	b, err := os.ReadFile(filepath.Join(imagesDir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	f, err := hf.OpenSafetensors(filepath.Join(imagesDir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return doc, f
}

func TestSmartResizeMatchesHF(t *testing.T) {
	doc, _ := loadGolden(t)
	if len(doc.SmartResize) < 10 {
		t.Fatalf("only %d smart_resize cases", len(doc.SmartResize))
	}
	for _, c := range doc.SmartResize {
		h, w, err := SmartResize(c.H, c.W, 32, c.MinPixels, c.MaxPixels)
		if c.Error != "" {
			if !errors.Is(err, ErrAspect) {
				t.Errorf("%d×%d: got %d×%d, %v; HF raised %q", c.H, c.W, h, w, err, c.Error)
			}
			continue
		}
		if err != nil || h != c.Out[0] || w != c.Out[1] {
			t.Errorf("smart_resize(%d, %d, min %d, max %d) = %d, %d, %v; HF %v", c.H, c.W, c.MinPixels, c.MaxPixels, h, w, err, c.Out)
		}
	}
}

// tolerance of pixel_values per file: one 8-bit level is 2/255 after
// normalisation. PNG and WebP decode identically, so any difference comes
// from the resampler (measured: bit-exact). JPEGs: Go's IDCT rounds
// differently from libjpeg's (3 levels measured); chroma upsampling and the
// colour conversion follow libjpeg (jpeg.go; Go's own nearest-neighbour
// chroma gave 16 levels on f.jpg).
var levelTolerance = map[string]int{"a.png": 0, "b.png": 0, "d.webp": 0, "e.png": 0, "c.jpg": 3, "f.jpg": 3, "g.jpg": 3, "h.jpg": 3}

func TestPixelValuesMatchHF(t *testing.T) {
	doc, f := loadGolden(t)
	o := DefaultOptions()
	o.MinPixels, o.MaxPixels = doc.MinPixels, doc.MaxPixels
	if len(doc.Images) == 0 {
		t.Fatal("no golden images")
	}
	for _, name := range doc.Images {
		data, err := os.ReadFile(filepath.Join(imagesDir, name))
		if err != nil {
			t.Fatal(err)
		}
		px, err := Process(data, o)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		gt, _ := f.Tensor("grid_thw." + name)
		g := make([]int, 3)
		for i := range g {
			g[i] = int(binary.LittleEndian.Uint64(gt.Data[8*i:]))
		}
		if px.GridT != g[0] || px.GridH != g[1] || px.GridW != g[2] {
			t.Fatalf("%s: grid %d,%d,%d; HF %v", name, px.GridT, px.GridH, px.GridW, g)
		}
		pt, _ := f.Tensor("pixel_values." + name)
		want, err := pt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != len(px.Values) || px.RowSize() != 1536 || int(pt.Shape[0]) != px.Rows() {
			t.Fatalf("%s: %d values (%d rows of %d); HF %v", name, len(px.Values), px.Rows(), px.RowSize(), pt.Shape)
		}
		maxd, nd := 0.0, 0
		for i := range want {
			d := math.Abs(float64(px.Values[i] - want[i]))
			if d > 0 {
				nd++
			}
			maxd = max(maxd, d)
		}
		levels := int(math.Round(maxd * 127.5))
		t.Logf("%s: -> %dx%d, max |Δ pixel_values| %.6f (%d levels), %d of %d differ", name, px.Width, px.Height, maxd, levels, nd, len(want))
		if tol, ok := levelTolerance[name]; !ok || levels > tol {
			t.Errorf("%s: max |Δ| %.6f = %d 8-bit levels, tolerance %d", name, maxd, levels, tol)
		}
	}
}

func encodePNG(t testing.TB, m image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestPatchOrder(t *testing.T) {
	// A 64×32 image whose pixel value encodes its patch: every pixel of patch
	// (gy, gx) has R = 10·gy + gx. Rows must come in 2×2 block order.
	m := image.NewNRGBA(image.Rect(0, 0, 64, 32))
	for y := 0; y < 32; y++ {
		for x := 0; x < 64; x++ {
			m.SetNRGBA(x, y, color.NRGBA{uint8(10*(y/16) + x/16), 0, 255, 255})
		}
	}
	o := DefaultOptions()
	o.MinPixels, o.MaxPixels = 64*32, 64*32
	px, err := Process(encodePNG(t, m), o)
	if err != nil {
		t.Fatal(err)
	}
	if px.GridH != 2 || px.GridW != 4 || px.Rows() != 8 {
		t.Fatalf("grid %d×%d", px.GridH, px.GridW)
	}
	// block (0,0): patches (0,0) (0,1) (1,0) (1,1); block (0,1): (0,2) (0,3) (1,2) (1,3)
	want := []int{0, 1, 10, 11, 2, 3, 12, 13}
	for n, w := range want {
		row := px.Values[n*1536 : (n+1)*1536]
		r := math.Round(float64(row[0])*127.5 + 127.5)
		last := math.Round(float64(row[511])*127.5 + 127.5) // R of frame 1, last pixel
		b := math.Round(float64(row[1024])*127.5 + 127.5)
		if int(r) != w || int(last) != w || b != 255 {
			t.Errorf("row %d: R %v (last %v), B %v; want R %d, B 255", n, r, last, b, w)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	big := image.NewGray(image.Rect(0, 0, 300, 200))
	data := encodePNG(t, big)
	cases := []struct {
		name string
		data []byte
		lim  Limits
		want string
	}{
		{"empty", nil, DefaultLimits(), "not a decodable"},
		{"garbage", []byte("hello, not an image"), DefaultLimits(), "not a decodable"},
		{"truncated", data[:len(data)/2], DefaultLimits(), "corrupt png"},
		{"bytes", data, Limits{MaxBytes: 10}, "too large"},
		{"pixels", data, Limits{MaxPixels: 300*200 - 1}, "too large"},
		{"side", data, Limits{MaxSide: 250}, "too large"},
	}
	for _, c := range cases {
		_, err := Decode(c.data, c.lim)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
	if _, err := Decode(data, Limits{MaxPixels: 300 * 200}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	// Aspect ratio over 200 and too many images.
	thin := encodePNG(t, image.NewGray(image.Rect(0, 0, 402, 2)))
	if _, err := Process(thin, DefaultOptions()); !errors.Is(err, ErrAspect) {
		t.Errorf("402×2: %v", err)
	}
	o := DefaultOptions()
	o.MaxImages = 1
	if _, err := ProcessAll([][]byte{data, data}, o); err == nil || !strings.Contains(err.Error(), "limit 1") {
		t.Errorf("two images, limit 1: %v", err)
	}
	o.MaxImages = 2
	if _, err := ProcessAll([][]byte{data, []byte("x")}, o); err == nil || !strings.HasPrefix(err.Error(), "image 1:") {
		t.Errorf("bad second image: %v", err)
	}
}

// jpegWithOrientation encodes m as a JPEG carrying an EXIF APP1 segment
// with the given orientation tag.
func jpegWithOrientation(t *testing.T, m image.Image, o uint16) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, byte(o >> 8), byte(o), 0, 0, 0, 0, 0, 0}
	seg := append([]byte("Exif\x00\x00"), tiff...)
	app1 := append([]byte{0xFF, 0xE1, byte((len(seg) + 2) >> 8), byte(len(seg) + 2)}, seg...)
	return append(append(append([]byte{}, b[:2]...), app1...), b[2:]...)
}

func TestEXIFOrientation(t *testing.T) {
	// 32×16, left half black, right half white.
	m := image.NewGray(image.Rect(0, 0, 32, 16))
	for y := 0; y < 16; y++ {
		for x := 16; x < 32; x++ {
			m.SetGray(x, y, color.Gray{255})
		}
	}
	for _, c := range []struct {
		o       uint16
		w, h    int
		whiteAt [2]int // a pixel that must be white
		blackAt [2]int
	}{
		{1, 32, 16, [2]int{30, 1}, [2]int{1, 1}},
		{2, 32, 16, [2]int{1, 1}, [2]int{30, 1}},
		{3, 32, 16, [2]int{1, 1}, [2]int{30, 1}},
		{6, 16, 32, [2]int{1, 30}, [2]int{1, 1}}, // rotated 90° clockwise: right half goes to the bottom
		{8, 16, 32, [2]int{1, 1}, [2]int{1, 30}}, // counter-clockwise: right half goes to the top
	} {
		img, err := Decode(jpegWithOrientation(t, m, c.o), DefaultLimits())
		if err != nil {
			t.Fatalf("orientation %d: %v", c.o, err)
		}
		if img.Width != c.w || img.Height != c.h {
			t.Errorf("orientation %d: %d×%d, want %d×%d", c.o, img.Width, img.Height, c.w, c.h)
			continue
		}
		if img.At(c.whiteAt[0], c.whiteAt[1], 0) < 200 || img.At(c.blackAt[0], c.blackAt[1], 0) > 55 {
			t.Errorf("orientation %d: white pixel %d, black pixel %d", c.o, img.At(c.whiteAt[0], c.whiteAt[1], 0), img.At(c.blackAt[0], c.blackAt[1], 0))
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"a.png", "c.jpg", "d.webp", "f.jpg", "g.jpg", "h.jpg"} {
		if b, err := os.ReadFile(filepath.Join(imagesDir, name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("\xff\xd8\xff\xe1\x00\x10Exif\x00\x00MM\x00*\x00\x00\x00\x08"))
	lim := Limits{MaxBytes: 1 << 20, MaxPixels: 512 * 512, MaxSide: 2048}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, lim)
		if err != nil {
			return
		}
		if m.Width*m.Height > lim.MaxPixels || len(m.Pix) != m.Width*m.Height*3 {
			t.Fatalf("decoded %d×%d with %d bytes", m.Width, m.Height, len(m.Pix))
		}
		o := DefaultOptions()
		o.MinPixels, o.MaxPixels = 32*32, 64*64
		if _, err := Preprocess(m, o); err != nil && !errors.Is(err, ErrAspect) {
			t.Fatalf("preprocess: %v", err)
		}
	})
}
