package hf

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
)

// MaxSafetensorsHeader is the largest header accepted, in bytes (100 MiB).
const MaxSafetensorsHeader = 100 << 20

// DType is the element type of a safetensors tensor, spelled in the file as
// "BF16", "F32", and so on. It is not the IR's dtype: model builders map
// between the two. These numbers are not stored anywhere.
type DType uint8

// The dtypes of the safetensors format.
const (
	DTypeInvalid DType = iota
	BF16
	F16
	F32
	F64
	I64
	I32
	I16
	I8
	U8
	Bool
	F8E4M3
	F8E5M2
)

var dtypeInfo = [...]struct {
	name string
	size int
}{
	BF16:   {"BF16", 2},
	F16:    {"F16", 2},
	F32:    {"F32", 4},
	F64:    {"F64", 8},
	I64:    {"I64", 8},
	I32:    {"I32", 4},
	I16:    {"I16", 2},
	I8:     {"I8", 1},
	U8:     {"U8", 1},
	Bool:   {"BOOL", 1},
	F8E4M3: {"F8_E4M3", 1},
	F8E5M2: {"F8_E5M2", 1},
}

// String returns the safetensors spelling of d ("BF16", "F8_E4M3", ...).
func (d DType) String() string {
	if d.Valid() {
		return dtypeInfo[d].name
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the size of one element in bytes, 0 for an invalid dtype.
func (d DType) Size() int {
	if d.Valid() {
		return dtypeInfo[d].size
	}
	return 0
}

// Valid reports whether d is one of the dtypes above.
func (d DType) Valid() bool { return d != DTypeInvalid && int(d) < len(dtypeInfo) }

// ParseDType parses the safetensors spelling of a dtype.
func ParseDType(s string) (DType, error) {
	for d := BF16; int(d) < len(dtypeInfo); d++ {
		if dtypeInfo[d].name == s {
			return d, nil
		}
	}
	return DTypeInvalid, fmt.Errorf("unknown dtype %q", s)
}

// TensorInfo is one tensor entry of a safetensors header.
type TensorInfo struct {
	Name  string
	DType DType
	Shape []int64
	// Offset is where the tensor's bytes start, counted from the start of
	// the file (the header's data_offsets[0] + 8 + header length); Size is
	// their length in bytes.
	Offset, Size int64
}

// Tensor is a tensor of a checkpoint. Data holds its little-endian bytes,
// NumElements()×DType.Size() of them; it is not necessarily aligned.
//
// Tensors returned by SafetensorsFile and Checkpoint alias the read-only
// memory map of their file: Data must not be written to, and it becomes
// invalid (reading it faults) once the file is closed.
type Tensor struct {
	Name  string
	DType DType
	Shape []int64
	Data  []byte
}

// NumElements is the product of t.Shape (1 for a scalar). It saturates at
// math.MaxInt64 for an absurd hand-built shape; shapes read from a file
// have been checked not to overflow.
func (t *Tensor) NumElements() int64 {
	n, ok := numElements(t.Shape)
	if !ok {
		return math.MaxInt64
	}
	return n
}

// Float32 returns the tensor's values converted to float32, in a new slice.
// Only BF16, F16 and F32 tensors are supported.
func (t *Tensor) Float32() ([]float32, error) {
	size := t.DType.Size()
	if n := t.NumElements(); size == 0 || n > int64(len(t.Data)) || n*int64(size) != int64(len(t.Data)) {
		return nil, fmt.Errorf("tensor %q: %d bytes of data do not fit %s shape %v", t.Name, len(t.Data), t.DType, t.Shape)
	}
	out := make([]float32, len(t.Data)/size)
	le := binary.LittleEndian
	switch t.DType {
	case BF16:
		for i := range out {
			out[i] = BF16ToFloat32(le.Uint16(t.Data[2*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(le.Uint16(t.Data[2*i:]))
		}
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(le.Uint32(t.Data[4*i:]))
		}
	default:
		return nil, fmt.Errorf("tensor %q: cannot convert %s to float32", t.Name, t.DType)
	}
	return out, nil
}

// numElements is the product of shape, with ok false when a dimension is
// negative or the product overflows int64.
func numElements(shape []int64) (n int64, ok bool) {
	n = 1
	for _, d := range shape {
		if d < 0 || d != 0 && n > math.MaxInt64/d {
			return 0, false
		}
		n *= d
	}
	return n, true
}

// ParseSafetensorsHeader parses and validates the header of a safetensors
// file. buf holds the start of the file: at least the 8-byte little-endian
// header length N and the N bytes of JSON after it (it may hold the whole
// file). fileSize is the size of the whole file, against which the tensors'
// byte ranges are checked.
//
// It checks that N fits the file and MaxSafetensorsHeader, that the JSON is
// one object without duplicate keys, that every dtype is known, every shape
// has non-negative dimensions whose product does not overflow, every byte
// range lies inside the data region, has the length its shape and dtype
// require and overlaps no other tensor. It returns the tensors sorted by name
// and the "__metadata__" strings (nil when absent).
func ParseSafetensorsHeader(buf []byte, fileSize int64) ([]TensorInfo, map[string]string, error) {
	if fileSize < 8 || len(buf) < 8 {
		return nil, nil, fmt.Errorf("file is %d bytes, too small for a safetensors file (its header length alone takes 8)", min(fileSize, int64(len(buf))))
	}
	if int64(len(buf)) > fileSize {
		return nil, nil, fmt.Errorf("buffer of %d bytes is longer than the file size %d", len(buf), fileSize)
	}
	n := binary.LittleEndian.Uint64(buf)
	switch {
	case n > uint64(fileSize-8):
		return nil, nil, fmt.Errorf("header length %d exceeds the %d bytes after the length field: truncated or not a safetensors file", n, fileSize-8)
	case n > MaxSafetensorsHeader:
		return nil, nil, fmt.Errorf("header length %d exceeds the limit of %d bytes", n, MaxSafetensorsHeader)
	case n > uint64(len(buf)-8):
		return nil, nil, fmt.Errorf("header length %d exceeds the %d bytes given", n, len(buf)-8)
	}
	header := buf[8 : 8+n]
	dataStart := 8 + int64(n)
	dataSize := fileSize - dataStart

	dec := json.NewDecoder(bytes.NewReader(header))
	jsonErr := func(err error) error {
		// The decoder's offsets are relative to the value it was reading;
		// re-check the whole header for a position that means something.
		if verr := json.Unmarshal(header, new(json.RawMessage)); verr != nil {
			err = verr
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("header JSON: %w", JSONError(header, err))
	}
	if tok, err := dec.Token(); err != nil {
		return nil, nil, jsonErr(err)
	} else if tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("header JSON: want an object, got %v", tok)
	}
	var (
		infos []TensorInfo
		meta  map[string]string
		seen  = make(map[string]bool)
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, jsonErr(err)
		}
		key := tok.(string) // object keys are always strings
		if seen[key] {
			return nil, nil, fmt.Errorf("header JSON: duplicate key %q", key)
		}
		seen[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, jsonErr(err)
		}
		if key == "__metadata__" {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, fmt.Errorf("header __metadata__: want an object of strings: %w", err)
			}
			continue
		}
		info, err := parseTensorEntry(key, raw, dataStart, dataSize)
		if err != nil {
			return nil, nil, err
		}
		infos = append(infos, info)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, jsonErr(err)
	}
	if rest := bytes.TrimLeft(header[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return nil, nil, fmt.Errorf("header JSON: unexpected data after the object at byte offset %d", len(header)-len(rest))
	}

	// Overlap check in file order; empty tensors occupy no bytes.
	byOffset := slices.Clone(infos)
	slices.SortFunc(byOffset, func(a, b TensorInfo) int {
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Size, b.Size))
	})
	var prev *TensorInfo
	for i := range byOffset {
		t := &byOffset[i]
		if t.Size == 0 {
			continue
		}
		if prev != nil && t.Offset < prev.Offset+prev.Size {
			return nil, nil, fmt.Errorf("tensors %q and %q overlap (data_offsets [%d, %d) and [%d, %d))",
				prev.Name, t.Name, prev.Offset-dataStart, prev.Offset+prev.Size-dataStart, t.Offset-dataStart, t.Offset+t.Size-dataStart)
		}
		prev = t
	}
	slices.SortFunc(infos, func(a, b TensorInfo) int { return cmp.Compare(a.Name, b.Name) })
	return infos, meta, nil
}

// parseTensorEntry validates one tensor entry of a header.
func parseTensorEntry(name string, raw json.RawMessage, dataStart, dataSize int64) (TensorInfo, error) {
	fail := func(format string, args ...any) (TensorInfo, error) {
		return TensorInfo{}, fmt.Errorf("tensor %q: %s", name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return fail("empty tensor name")
	}
	if len(raw) == 0 || raw[0] != '{' {
		return fail("want an object with dtype, shape and data_offsets, got %s", jsonKind(raw))
	}
	var e struct {
		DType       *string `json:"dtype"`
		Shape       []int64 `json:"shape"`
		DataOffsets []int64 `json:"data_offsets"`
	}
	if err := json.Unmarshal(raw, &e); err != nil {
		return fail("%v", err)
	}
	if e.DType == nil {
		return fail("no dtype")
	}
	dt, err := ParseDType(*e.DType)
	if err != nil {
		return fail("%v", err)
	}
	if e.Shape == nil {
		return fail("no shape")
	}
	numel, ok := numElements(e.Shape)
	if !ok || numel > math.MaxInt64/int64(dt.Size()) {
		return fail("invalid shape %v (negative dimension or too many elements)", e.Shape)
	}
	if len(e.DataOffsets) != 2 {
		return fail("data_offsets must be [begin, end], got %v", e.DataOffsets)
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin || end > dataSize {
		return fail("data_offsets [%d, %d] outside the %d-byte data region (file truncated?)", begin, end, dataSize)
	}
	if want := numel * int64(dt.Size()); end-begin != want {
		return fail("data_offsets [%d, %d] span %d bytes, but %s %v needs %d", begin, end, end-begin, dt, e.Shape, want)
	}
	return TensorInfo{Name: name, DType: dt, Shape: e.Shape, Offset: dataStart + begin, Size: end - begin}, nil
}

// jsonKind names the JSON type of a raw value, for error messages.
func jsonKind(raw []byte) string {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

// SafetensorsFile is an open, memory-mapped safetensors file.
type SafetensorsFile struct {
	path    string
	data    []byte
	unmap   func([]byte) error
	tensors map[string]*Tensor
	names   []string
	meta    map[string]string
}

// OpenSafetensors maps the safetensors file at path read-only and validates
// its header (see ParseSafetensorsHeader). Tensor data is not read or copied:
// the tensors alias the map until Close.
func OpenSafetensors(path string) (*SafetensorsFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size < 8 {
		return nil, fmt.Errorf("%s: file is %d bytes, too small for a safetensors file (its header length alone takes 8)", path, size)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: file of %d bytes is too large to map", path, size)
	}
	data, unmap, err := mapFile(f, int(size))
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	infos, meta, err := ParseSafetensorsHeader(data, size)
	if err != nil {
		unmap(data)
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	sf := &SafetensorsFile{
		path:    path,
		data:    data,
		unmap:   unmap,
		tensors: make(map[string]*Tensor, len(infos)),
		names:   make([]string, len(infos)),
		meta:    meta,
	}
	for i, info := range infos {
		end := info.Offset + info.Size
		sf.tensors[info.Name] = &Tensor{Name: info.Name, DType: info.DType, Shape: info.Shape, Data: data[info.Offset:end:end]}
		sf.names[i] = info.Name
	}
	return sf, nil
}

// Path returns the path the file was opened with.
func (f *SafetensorsFile) Path() string { return f.path }

// Names returns the names of the file's tensors, sorted.
func (f *SafetensorsFile) Names() []string { return slices.Clone(f.names) }

// Tensor returns the named tensor, aliasing the file's memory map.
func (f *SafetensorsFile) Tensor(name string) (*Tensor, bool) {
	t, ok := f.tensors[name]
	return t, ok
}

// Metadata returns the header's "__metadata__" strings (empty when absent).
func (f *SafetensorsFile) Metadata() map[string]string { return maps.Clone(f.meta) }

// Close unmaps the file. Every Tensor obtained from f becomes invalid: its
// Data must not be touched afterwards. Close is idempotent.
func (f *SafetensorsFile) Close() error {
	if f.data == nil {
		return nil
	}
	data := f.data
	f.data, f.tensors = nil, nil
	if err := f.unmap(data); err != nil {
		return fmt.Errorf("%s: munmap: %w", f.path, err)
	}
	return nil
}

// WriteSafetensors writes tensors and metadata to w in the safetensors
// format: header keys sorted by name, tensor data in name order without gaps,
// and, as the reference implementation does, the header padded with spaces so
// that the data starts at an 8-byte boundary. metadata may be nil.
//
// It checks only that names are unique and non-empty: Data is written as
// given and data_offsets follow len(Data), so tests can write files whose
// byte lengths do not match their shapes, or with invalid dtypes (written as
// "DType(N)"), to exercise readers.
func WriteSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	type entry struct {
		DType       string   `json:"dtype"`
		Shape       []int64  `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	sorted := make([]*Tensor, len(tensors))
	for i := range tensors {
		sorted[i] = &tensors[i]
	}
	slices.SortFunc(sorted, func(a, b *Tensor) int { return cmp.Compare(a.Name, b.Name) })
	header := make(map[string]any, len(tensors)+1)
	if len(metadata) > 0 {
		header["__metadata__"] = metadata
	}
	var off int64
	for i, t := range sorted {
		switch {
		case t.Name == "" || t.Name == "__metadata__":
			return fmt.Errorf("write safetensors: invalid tensor name %q", t.Name)
		case i > 0 && sorted[i-1].Name == t.Name:
			return fmt.Errorf("write safetensors: duplicate tensor %q", t.Name)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = entry{t.DType.String(), shape, [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	hdr, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	if pad := (8 - len(hdr)%8) % 8; pad > 0 {
		hdr = append(hdr, bytes.Repeat([]byte{' '}, pad)...)
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("write safetensors: %w", err)
	}
	for _, t := range sorted {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("write safetensors: tensor %q: %w", t.Name, err)
		}
	}
	return nil
}
