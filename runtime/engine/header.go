package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/inference-pio/pio/ir"
)

// Format constants. See the package documentation for the layout.
const (
	Magic        = "PIOENGN\x00"
	FormatMajor  = 1
	FormatMinor  = 3 // 1.1: Engine.kernels; 1.2: Engine.stages, preprocessor_config_json; 1.3: Stage.kernels
	HeaderSize   = 64
	RegionAlign  = 4096    // alignment of the weights region in the file
	TensorAlign  = 64      // alignment of each tensor in the region
	MaxMetadata  = 1 << 30 // largest metadata section, raw (decompressed)
	compatBytes  = 16      // magic + compatibility block + header size
	metaIdent    = "PIOM"  // FlatBuffers file identifier of the metadata
	metaAlign    = 64
	flagRequired = 0x00ff // flag bits a reader must understand
)

// Compression is how the metadata section is stored.
type Compression uint16

// Metadata compressions.
const (
	CompressNone Compression = 0
	CompressZstd Compression = 1
)

func (c Compression) String() string {
	switch c {
	case CompressNone:
		return "none"
	case CompressZstd:
		return "zstd"
	}
	return fmt.Sprintf("compression(%d)", uint16(c))
}

// Header is the fixed 64-byte header at offset 0.
type Header struct {
	Major, Minor uint16
	// MaxOp is the highest ir.Op number the plan uses.
	MaxOp      ir.Op
	HeaderSize uint16
	Flags      uint16

	MetaCompression Compression
	MetaCRC         uint32 // CRC-32C of the stored metadata bytes
	MetaOffset      uint64
	MetaStoredLen   uint64
	MetaRawLen      uint64

	WeightsOffset uint64
	WeightsLen    uint64
}

// Errors returned by Parse and Open wrap one of these, so callers can tell a
// damaged file from one this runtime is too old (or too new) for.
var (
	ErrCorrupt      = errors.New("engine: corrupt")
	ErrIncompatible = errors.New("engine: incompatible")
)

// formatError keeps the exact message while classifying the error.
type formatError struct {
	kind  error
	msg   string
	cause error
}

func (e *formatError) Error() string { return e.msg }

func (e *formatError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// corrupt and incompatible format messages as "engine: ..."; a %w verb
// in format is honoured.
func corrupt(format string, args ...any) error { return newFormatError(ErrCorrupt, format, args) }

func incompatible(format string, args ...any) error {
	return newFormatError(ErrIncompatible, format, args)
}

func newFormatError(kind error, format string, args []any) error {
	err := fmt.Errorf("engine: "+format, args...)
	return &formatError{kind: kind, msg: err.Error(), cause: errors.Unwrap(err)}
}

// maxKnownOp is the highest op number this runtime implements.
var maxKnownOp = func() ir.Op {
	ops := ir.Ops()
	return ops[len(ops)-1]
}()

// marshal encodes h into its 64 bytes.
func (h *Header) marshal() []byte {
	b := make([]byte, HeaderSize)
	le := binary.LittleEndian
	copy(b[0:8], Magic)
	le.PutUint16(b[8:], h.Major)
	le.PutUint16(b[10:], h.Minor)
	le.PutUint16(b[12:], uint16(h.MaxOp))
	le.PutUint16(b[14:], h.HeaderSize)
	le.PutUint16(b[16:], h.Flags)
	le.PutUint16(b[18:], uint16(h.MetaCompression))
	le.PutUint32(b[20:], h.MetaCRC)
	le.PutUint64(b[24:], h.MetaOffset)
	le.PutUint64(b[32:], h.MetaStoredLen)
	le.PutUint64(b[40:], h.MetaRawLen)
	le.PutUint64(b[48:], h.WeightsOffset)
	le.PutUint64(b[56:], h.WeightsLen)
	return b
}

// ParseHeader decodes and checks the header at the start of b: magic,
// format version, the ops the plan needs, header size, flags and
// compression. Whether the regions fit the file is checked by Parse, which
// knows the file's size.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < compatBytes {
		return h, corrupt("file is %d bytes, too short for an engine header", len(b))
	}
	if string(b[:8]) != Magic {
		return h, corrupt("not an engine file (magic %q, want %q)", b[:8], Magic)
	}
	le := binary.LittleEndian
	h.Major, h.Minor = le.Uint16(b[8:]), le.Uint16(b[10:])
	h.MaxOp = ir.Op(le.Uint16(b[12:]))
	h.HeaderSize = le.Uint16(b[14:])
	if h.Major != FormatMajor {
		return h, incompatible("format version %d.%d, this runtime reads %d.x", h.Major, h.Minor, FormatMajor)
	}
	if h.MaxOp > maxKnownOp {
		return h, incompatible("plan uses op %d, but this runtime knows ops only up to %d (%v): the engine was built by a newer pioc; update the runtime or rebuild the engine",
			uint16(h.MaxOp), uint16(maxKnownOp), maxKnownOp)
	}
	if h.HeaderSize < HeaderSize {
		return h, corrupt("header size %d, want at least %d", h.HeaderSize, HeaderSize)
	}
	if len(b) < int(h.HeaderSize) {
		return h, corrupt("file is %d bytes, too short for its %d-byte header", len(b), h.HeaderSize)
	}
	h.Flags = le.Uint16(b[16:])
	h.MetaCompression = Compression(le.Uint16(b[18:]))
	h.MetaCRC = le.Uint32(b[20:])
	h.MetaOffset = le.Uint64(b[24:])
	h.MetaStoredLen = le.Uint64(b[32:])
	h.MetaRawLen = le.Uint64(b[40:])
	h.WeightsOffset = le.Uint64(b[48:])
	h.WeightsLen = le.Uint64(b[56:])
	if f := h.Flags & flagRequired; f != 0 {
		return h, incompatible("header flags %#04x are unknown to this runtime", f)
	}
	if h.MetaCompression != CompressNone && h.MetaCompression != CompressZstd {
		return h, incompatible("metadata compression %v is unknown to this runtime", h.MetaCompression)
	}
	return h, nil
}

// checkRegions checks, overflow-safely, that the weights region and the
// metadata section lie inside a file of size bytes, after the header and
// apart from each other.
func (h *Header) checkRegions(size uint64) error {
	hs := uint64(h.HeaderSize)
	if h.WeightsOffset%RegionAlign != 0 || h.WeightsOffset < hs {
		return corrupt("weights region offset %d is not a multiple of %d after the header", h.WeightsOffset, RegionAlign)
	}
	if h.WeightsOffset > size || h.WeightsLen > size-h.WeightsOffset {
		return corrupt("weights region [%d, +%d) runs past the end of the %d-byte file (truncated?)", h.WeightsOffset, h.WeightsLen, size)
	}
	if h.MetaStoredLen == 0 {
		return corrupt("no metadata section")
	}
	if h.MetaOffset > size || h.MetaStoredLen > size-h.MetaOffset {
		return corrupt("metadata [%d, +%d) runs past the end of the %d-byte file (truncated?)", h.MetaOffset, h.MetaStoredLen, size)
	}
	if h.MetaOffset < hs {
		return corrupt("metadata offset %d overlaps the header", h.MetaOffset)
	}
	metaEnd, weightsEnd := h.MetaOffset+h.MetaStoredLen, h.WeightsOffset+h.WeightsLen
	if h.MetaOffset < weightsEnd && h.WeightsOffset < metaEnd {
		return corrupt("metadata [%d, %d) overlaps the weights region [%d, %d)", h.MetaOffset, metaEnd, h.WeightsOffset, weightsEnd)
	}
	if h.MetaRawLen == 0 || h.MetaRawLen > MaxMetadata {
		return corrupt("metadata raw length %d is outside (0, %d]", h.MetaRawLen, MaxMetadata)
	}
	if h.MetaCompression == CompressNone && h.MetaRawLen != h.MetaStoredLen {
		return corrupt("uncompressed metadata has stored length %d but raw length %d", h.MetaStoredLen, h.MetaRawLen)
	}
	return nil
}

func alignUp(n, a uint64) (uint64, bool) {
	r := (n + a - 1) / a * a
	return r, r >= n
}
