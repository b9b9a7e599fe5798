// Package engine reads and writes engine.pio, the single file that pioc
// builds from a checkpoint and the runtime executes: a fixed header, the raw
// weights, and a FlatBuffers metadata section (schemas/engine.fbs) holding
// the model description, tokenizer files, chat template and the ir.Plan.
//
// Create writes an engine; Open maps one read-only and checks everything in
// it before handing it out; Parse is the in-memory reader behind Open (and
// the fuzz target). Nothing in a file is trusted: a truncated, corrupted or
// hostile engine gives an error that says what is wrong, never a panic.
//
// # File layout
//
// All integers are little-endian. Offsets and lengths are 64-bit, so
// engines larger than 2 GiB (and 4 GiB) work.
//
//	offset  size  field
//	     0     8  magic "PIOENGN\x00"
//	     8     2  format major version (this package: 1)
//	    10     2  format minor version (this package: FormatMinor, 3)
//	    12     2  highest ir.Op number used by the plan
//	    14     2  header size in bytes (64; readers accept more)
//	    16     2  flags (none defined in 1.0; must be 0)
//	    18     2  metadata compression (0 none, 1 zstd)
//	    20     4  metadata CRC-32C (Castagnoli) of the stored bytes
//	    24     8  metadata offset
//	    32     8  metadata stored length
//	    40     8  metadata raw length (after decompression; at most 1 GiB)
//	    48     8  weights region offset (a multiple of 4096)
//	    56     8  weights region length
//	    64        (zero padding up to the weights region)
//	  4096        weights region: each tensor raw, at a 64-byte aligned offset
//	              from the region start, zero padding between tensors
//	   ...        metadata: a FlatBuffer (root pio.Engine, identifier "PIOM"),
//	              zstd-compressed by default; 64-byte aligned
//
// Bytes 8–15 are the compatibility block and keep their place in every
// format version, so any runtime can say why it refuses a file. A reader
// accepts exactly its own major version and any minor version (minor
// versions only append FlatBuffers fields, which older readers skip). The
// highest op number lets a runtime refuse, before decoding anything else, a
// plan that uses ops it does not implement; the op numbers themselves are
// ir's append-only numbers.
//
// The weights region starts page-aligned so that the runtime maps the file
// and hands out zero-copy slices of it. The metadata section follows the
// weights because its checksums are known only after every tensor has been
// written; the header is written last, and the whole file is written to
// path+".tmp" and renamed into place, so a failed build never leaves a
// partial engine behind.
//
// Each tensor is a pio.WeightEntry {name, dtype, shape, offset, length,
// checksum, compression}: offset is relative to the weights region, length
// is elems × dtype size, checksum is the CRC-32C of the bytes. Open checks
// the metadata checksum always and the tensor checksums on request
// (OpenOptions.VerifyWeights, Engine.VerifyWeights), since reading tens of
// GB is not something every start should pay for.
//
// What this package is not: it runs nothing, knows nothing about backends,
// and does not convert checkpoints; it only stores and checks what pioc
// produced.
package engine
