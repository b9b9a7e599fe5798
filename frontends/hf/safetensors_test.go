package hf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func u16Bytes(vs ...uint16) []byte {
	b := make([]byte, 2*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func f32Bytes(vs ...float32) []byte {
	b := make([]byte, 4*len(vs))
	for i, v := range vs {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// writeSafetensors writes a safetensors file with WriteSafetensors.
func writeSafetensors(t *testing.T, path string, tensors []Tensor, meta map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, tensors, meta); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// rawSafetensors builds a file from a hand-written header and data region.
func rawSafetensors(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

// sameFloats compares bit patterns, so -0, Inf and NaN are checked exactly.
func sameFloats(t *testing.T, name string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values, want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := math.Float32bits(got[i]), math.Float32bits(want[i])
		if g != w && !(math.IsNaN(float64(got[i])) && math.IsNaN(float64(want[i]))) {
			t.Errorf("%s[%d] = %v (%#08x), want %v (%#08x)", name, i, got[i], g, want[i], w)
		}
	}
}

func TestSafetensorsRoundTrip(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	tests := []struct {
		tensor Tensor
		want   []float32 // nil: Float32 must fail
	}{
		{
			Tensor{Name: "bf16", DType: BF16, Shape: []int64{2, 4},
				Data: u16Bytes(0x3f80, 0xc000, 0x4049, 0x8000, 0x7f80, 0xff80, 0x0001, 0x7fc0)},
			[]float32{1, -2, 3.140625, float32(math.Copysign(0, -1)), inf, -inf, float32(math.Ldexp(1, -133)), nan},
		},
		{
			Tensor{Name: "f16", DType: F16, Shape: []int64{9},
				Data: u16Bytes(0x3c00, 0x0001, 0x8001, 0x03ff, 0x0400, 0x7bff, 0xfc00, 0x3555, 0x7e00)},
			[]float32{1, 0x1p-24, -0x1p-24, 1023 * 0x1p-24, 0x1p-14, 65504, -inf, 0.33325195, nan},
		},
		{
			Tensor{Name: "f32", DType: F32, Shape: []int64{3},
				Data: f32Bytes(1.5, -1e-40, 3.4028235e38)},
			[]float32{1.5, -1e-40, 3.4028235e38},
		},
		{
			Tensor{Name: "scalar", DType: F32, Shape: []int64{}, Data: f32Bytes(7)},
			[]float32{7},
		},
		{
			Tensor{Name: "empty", DType: BF16, Shape: []int64{0, 5}},
			[]float32{},
		},
		{
			Tensor{Name: "ids", DType: I64, Shape: []int64{2}, Data: make([]byte, 16)},
			nil,
		},
		{
			Tensor{Name: "mask", DType: Bool, Shape: []int64{3}, Data: []byte{1, 0, 1}},
			nil,
		},
	}
	var tensors []Tensor
	for _, tt := range tests {
		tensors = append(tensors, tt.tensor)
	}
	meta := map[string]string{"format": "pt"}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	writeSafetensors(t, path, tensors, meta)

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint64(raw); n%8 != 0 || !bytes.HasSuffix(bytes.TrimRight(raw[8:8+n], " "), []byte("}")) {
		t.Errorf("header of %d bytes %q: want JSON padded with spaces to a multiple of 8", n, raw[8:8+n])
	}

	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if diff := cmp.Diff(f.Names(), []string{"bf16", "empty", "f16", "f32", "ids", "mask", "scalar"}); diff != "" {
		t.Errorf("Names (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(f.Metadata(), meta); diff != "" {
		t.Errorf("Metadata (-got +want):\n%s", diff)
	}
	for _, tt := range tests {
		t.Run(tt.tensor.Name, func(t *testing.T) {
			got, ok := f.Tensor(tt.tensor.Name)
			if !ok {
				t.Fatalf("tensor missing")
			}
			want := tt.tensor
			if want.Data == nil {
				want.Data = []byte{}
			}
			if diff := cmp.Diff(*got, want); diff != "" {
				t.Errorf("tensor (-got +want):\n%s", diff)
			}
			if n := got.NumElements(); n*int64(got.DType.Size()) != int64(len(got.Data)) {
				t.Errorf("NumElements = %d, inconsistent with %d bytes", n, len(got.Data))
			}
			vals, err := got.Float32()
			if tt.want == nil {
				if err == nil {
					t.Errorf("Float32 of %s succeeded, want an error", got.DType)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			sameFloats(t, got.Name, vals, tt.want)
		})
	}
	if _, ok := f.Tensor("nope"); ok {
		t.Error(`Tensor("nope") found`)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestFloat32Mismatch(t *testing.T) {
	tt := Tensor{Name: "w", DType: F32, Shape: []int64{3}, Data: make([]byte, 8)}
	if _, err := tt.Float32(); err == nil || !strings.Contains(err.Error(), `"w"`) {
		t.Errorf("Float32 of a short tensor: err = %v, want an error naming it", err)
	}
}

func TestWriteSafetensorsErrors(t *testing.T) {
	for _, tensors := range [][]Tensor{
		{{Name: "a", DType: F32}, {Name: "a", DType: F32}},
		{{Name: "", DType: F32}},
		{{Name: "__metadata__", DType: F32}},
	} {
		if err := WriteSafetensors(&bytes.Buffer{}, tensors, nil); err == nil {
			t.Errorf("WriteSafetensors(%v) succeeded, want an error", tensors)
		}
	}
}

func TestOpenSafetensorsErrors(t *testing.T) {
	valid := func() []byte {
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, []Tensor{{Name: "w", DType: F32, Shape: []int64{2}, Data: f32Bytes(1, 2)}}, nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}()
	written := func(ts ...Tensor) []byte {
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, ts, nil); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	f32 := `"dtype":"F32"`
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "file is 0 bytes, too small"},
		{"tiny file", []byte{1, 2, 3}, "file is 3 bytes, too small"},
		{"truncated", valid[:len(valid)-1], "outside the 7-byte data region"},
		{"truncated header", valid[:20], "exceeds the 12 bytes after the length field"},
		{"header longer than file", rawSafetensors("{}", nil)[:8], "header length 2 exceeds"},
		{"empty header", rawSafetensors("", nil), "header JSON"},
		{"bad JSON", rawSafetensors(`{"w": {`+f32+`,}}`, nil), "header JSON: invalid JSON at line 1, column 22 (byte offset 21)"},
		{"unterminated JSON", rawSafetensors(`{"w": `, nil), "header JSON: invalid JSON at line 1, column 7 (byte offset 6): unexpected end of JSON input"},
		{"not an object", rawSafetensors(`[1]`, nil), "want an object"},
		{"trailing data", rawSafetensors(`{} {}`, nil), "unexpected data after the object at byte offset 3"},
		{"duplicate", rawSafetensors(`{"a":{`+f32+`,"shape":[],"data_offsets":[0,4]},"a":{`+f32+`,"shape":[],"data_offsets":[0,4]}}`, make([]byte, 4)), `duplicate key "a"`},
		{"entry not an object", rawSafetensors(`{"w": 3}`, nil), `tensor "w": want an object with dtype, shape and data_offsets, got number`},
		{"overlap", rawSafetensors(`{"a":{`+f32+`,"shape":[2],"data_offsets":[0,8]},"b":{`+f32+`,"shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)),
			`tensors "a" and "b" overlap`},
		{"offsets past end", rawSafetensors(`{"a":{`+f32+`,"shape":[2],"data_offsets":[0,8]}}`, make([]byte, 4)), "outside the 4-byte data region"},
		{"begin after end", rawSafetensors(`{"a":{`+f32+`,"shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), "data_offsets [4, 0] outside"},
		{"negative offset", rawSafetensors(`{"a":{`+f32+`,"shape":[1],"data_offsets":[-4,0]}}`, make([]byte, 4)), "outside"},
		{"offsets not a pair", rawSafetensors(`{"a":{`+f32+`,"shape":[1],"data_offsets":[0]}}`, make([]byte, 4)), "must be [begin, end]"},
		{"fractional offset", rawSafetensors(`{"a":{`+f32+`,"shape":[1],"data_offsets":[0,4.5]}}`, make([]byte, 8)), `tensor "a"`},
		{"wrong length for shape", written(Tensor{Name: "w", DType: F32, Shape: []int64{3}, Data: make([]byte, 8)}),
			`tensor "w": data_offsets [0, 8] span 8 bytes, but F32 [3] needs 12`},
		{"unknown dtype", written(Tensor{Name: "w", DType: 99, Shape: []int64{1}, Data: make([]byte, 1)}), `unknown dtype "DType(99)"`},
		{"unknown dtype name", rawSafetensors(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, make([]byte, 16)), `unknown dtype "F128"`},
		{"no dtype", rawSafetensors(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "no dtype"},
		{"no shape", rawSafetensors(`{"a":{`+f32+`,"data_offsets":[0,4]}}`, make([]byte, 4)), "no shape"},
		{"negative dim", rawSafetensors(`{"a":{`+f32+`,"shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)), "invalid shape [-1]"},
		{"shape overflow", rawSafetensors(`{"a":{`+f32+`,"shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)), "too many elements"},
		{"shape times size overflow", rawSafetensors(`{"a":{`+f32+`,"shape":[4611686018427387904],"data_offsets":[0,4]}}`, make([]byte, 4)), "too many elements"},
		{"bad metadata", rawSafetensors(`{"__metadata__":{"a":1}}`, nil), "__metadata__: want an object of strings"},
		{"empty name", rawSafetensors(`{"":{`+f32+`,"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "empty tensor name"},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".safetensors")
			if err := os.WriteFile(path, tt.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := OpenSafetensors(path)
			if err == nil {
				f.Close()
				t.Fatalf("case %d: OpenSafetensors succeeded, want an error containing %q", i, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q\nwant it to name the file and contain %q", err, tt.want)
			}
		})
	}
}

func TestOpenSafetensorsNotAFile(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenSafetensors(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("OpenSafetensors(dir): err = %v, want 'not a regular file'", err)
	}
	if _, err := OpenSafetensors(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("OpenSafetensors(missing): err = %v, want not-exist", err)
	}
}

func TestParseSafetensorsHeaderLimits(t *testing.T) {
	huge := binary.LittleEndian.AppendUint64(nil, MaxSafetensorsHeader+1)
	if _, _, err := ParseSafetensorsHeader(huge, 1<<30); err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("huge header: err = %v, want 'exceeds the limit'", err)
	}
	hdr := rawSafetensors(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, nil)
	// The buffer may be a prefix of the file: data lives beyond it.
	infos, meta, err := ParseSafetensorsHeader(hdr, int64(len(hdr))+4)
	if err != nil {
		t.Fatal(err)
	}
	want := []TensorInfo{{Name: "a", DType: BF16, Shape: []int64{2}, Offset: int64(len(hdr)), Size: 4}}
	if diff := cmp.Diff(infos, want); diff != "" || meta != nil {
		t.Errorf("infos (-got +want):\n%s\nmeta %v", diff, meta)
	}
	if _, _, err := ParseSafetensorsHeader(hdr, int64(len(hdr))-1); err == nil {
		t.Error("buffer longer than the file: no error")
	}
}

func TestDType(t *testing.T) {
	for d := BF16; d <= F8E5M2; d++ {
		got, err := ParseDType(d.String())
		if err != nil || got != d || d.Size() == 0 {
			t.Errorf("ParseDType(%v.String()) = %v, %v; Size %d", d, got, err, d.Size())
		}
	}
	if DType(0).Valid() || DType(200).Size() != 0 || DType(200).String() != "DType(200)" {
		t.Error("invalid dtypes are not reported as such")
	}
}

// FuzzParseSafetensorsHeader checks that no input panics and that whatever
// the parser accepts is internally consistent.
func FuzzParseSafetensorsHeader(f *testing.F) {
	var buf bytes.Buffer
	WriteSafetensors(&buf, []Tensor{
		{Name: "a", DType: BF16, Shape: []int64{2, 2}, Data: make([]byte, 8)},
		{Name: "b", DType: F32, Shape: []int64{}, Data: make([]byte, 4)},
		{Name: "c", DType: I8, Shape: []int64{0}},
	}, map[string]string{"format": "pt"})
	f.Add(buf.Bytes(), uint16(0))
	f.Add(rawSafetensors(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, make([]byte, 12)), uint16(0))
	f.Add(rawSafetensors(`{"a":{"dtype":"F16","shape":[9223372036854775807],"data_offsets":[0,2]}}`, make([]byte, 2)), uint16(3))
	f.Add(rawSafetensors(`{"__metadata__":{"k":"v"}}  `, nil), uint16(0))
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255}, uint16(100))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, slack uint16) {
		fileSize := int64(len(data)) + int64(slack)
		infos, _, err := ParseSafetensorsHeader(data, fileSize)
		if err != nil {
			return
		}
		dataStart := 8 + int64(binary.LittleEndian.Uint64(data))
		var end []int64
		for i, in := range infos {
			if i > 0 && infos[i-1].Name >= in.Name {
				t.Fatalf("infos not sorted by name: %q before %q", infos[i-1].Name, in.Name)
			}
			tt := Tensor{DType: in.DType, Shape: in.Shape}
			if !in.DType.Valid() || in.Offset < dataStart || in.Size < 0 || in.Offset+in.Size > fileSize ||
				tt.NumElements()*int64(in.DType.Size()) != in.Size {
				t.Fatalf("accepted an inconsistent tensor: %+v (file %d bytes, data at %d)", in, fileSize, dataStart)
			}
			if in.Size > 0 {
				end = append(end, in.Offset, in.Offset+in.Size)
			}
		}
		// No byte may belong to two tensors.
		for i := 0; i < len(end); i += 2 {
			for j := i + 2; j < len(end); j += 2 {
				if end[i] < end[j+1] && end[j] < end[i+1] {
					t.Fatalf("accepted overlapping ranges [%d,%d) and [%d,%d)", end[i], end[i+1], end[j], end[j+1])
				}
			}
		}
	})
}
