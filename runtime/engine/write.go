package engine

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/inference-pio/pio/ir"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WeightSpec declares one tensor to store: its checkpoint name, element type
// and static shape.
type WeightSpec struct {
	Name  string
	DType ir.DType
	Shape []int64
}

// WriteOptions tunes Create. The zero value is the default: zstd-compressed
// metadata, no progress reports.
type WriteOptions struct {
	// UncompressedMetadata stores the metadata FlatBuffer raw instead of
	// zstd-compressed (useful to inspect it, or to fuzz the decoder).
	UncompressedMetadata bool
	// Progress, when set, is called after each tensor with the bytes of
	// weights written so far and in all.
	Progress func(done, total int64)
}

// Create writes an engine to path. weights lists the tensors in file order;
// fill(i, dst) must write all of weight i's bytes into dst, whose length is
// elems × dtype size (dst is zeroed before the call and reused afterwards,
// so fill must not keep it). Every weight the plan names must be among
// weights with the same dtype and shape; weights may also hold tensors the
// plan does not use.
//
// The plan is validated first, so Create never writes an engine that Open
// would refuse. The file is written as path+".tmp" and renamed to path only
// when complete: a failed build leaves no engine behind.
func Create(path string, meta *Metadata, weights []WeightSpec, fill func(i int, dst []byte) error, opt WriteOptions) error {
	if meta == nil || meta.Plan == nil {
		return fmt.Errorf("engine: create %s: no plan", path)
	}
	if err := meta.Plan.Validate(); err != nil {
		return fmt.Errorf("engine: create %s: %w", path, err)
	}
	if err := checkInt32s(meta.Plan); err != nil {
		return fmt.Errorf("engine: create %s: plan: %w", path, err)
	}
	entries, regionLen, err := layoutWeights(weights)
	if err != nil {
		return fmt.Errorf("engine: create %s: %w", path, err)
	}
	if _, err := matchPlanWeights(meta.Plan, entries); err != nil {
		return fmt.Errorf("engine: create %s: %w", path, err)
	}
	seen := map[string]bool{}
	for k, st := range meta.Stages {
		if st.Name == "" || seen[st.Name] || st.Plan == nil {
			return fmt.Errorf("engine: create %s: stage %d: needs a unique name and a plan", path, k)
		}
		seen[st.Name] = true
		if err := st.Plan.Validate(); err != nil {
			return fmt.Errorf("engine: create %s: stage %q: %w", path, st.Name, err)
		}
		if err := checkInt32s(st.Plan); err != nil {
			return fmt.Errorf("engine: create %s: stage %q: %w", path, st.Name, err)
		}
		if _, err := matchPlanWeights(st.Plan, entries); err != nil {
			return fmt.Errorf("engine: create %s: stage %q: %w", path, st.Name, err)
		}
	}
	if err := write(path, meta, entries, regionLen, fill, opt); err != nil {
		return fmt.Errorf("engine: create %s: %w", path, err)
	}
	return nil
}

// layoutWeights places each tensor at the next 64-byte aligned offset of
// the weights region and returns the entries (without checksums) and the
// region's length.
func layoutWeights(specs []WeightSpec) ([]WeightEntry, uint64, error) {
	entries := make([]WeightEntry, len(specs))
	seen := make(map[string]bool, len(specs))
	var off uint64
	for i, s := range specs {
		if s.Name == "" {
			return nil, 0, fmt.Errorf("weight %d: empty name", i)
		}
		if seen[s.Name] {
			return nil, 0, fmt.Errorf("weight %q: listed twice", s.Name)
		}
		seen[s.Name] = true
		n, err := tensorBytes(s.DType, s.Shape)
		if err != nil {
			return nil, 0, fmt.Errorf("weight %q: %w", s.Name, err)
		}
		start, ok := alignUp(off, TensorAlign)
		if !ok || n > math.MaxInt64-start {
			return nil, 0, fmt.Errorf("weight %q: weights region overflows", s.Name)
		}
		entries[i] = WeightEntry{Name: s.Name, DType: s.DType, Shape: append([]int64{}, s.Shape...), Offset: start, Length: n}
		off = start + n
	}
	return entries, off, nil
}

// tensorBytes is elems × dtype size of a static shape, overflow-checked.
func tensorBytes(dt ir.DType, shape []int64) (uint64, error) {
	if !dt.Valid() {
		return 0, fmt.Errorf("invalid dtype %v", dt)
	}
	n := uint64(dt.Size())
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v: dims must be static and >= 0", shape)
		}
		if d != 0 && n > math.MaxInt64/uint64(d) {
			return 0, fmt.Errorf("shape %v overflows", shape)
		}
		n *= uint64(d)
	}
	return n, nil
}

// matchPlanWeights maps each plan weight to its entry, checking dtype and
// shape; it also rejects duplicate entry names.
func matchPlanWeights(p *ir.Plan, entries []WeightEntry) ([]int, error) {
	byName := make(map[string]int, len(entries))
	for i, e := range entries {
		if _, dup := byName[e.Name]; dup {
			return nil, fmt.Errorf("weight %q: stored twice", e.Name)
		}
		byName[e.Name] = i
	}
	idx := make([]int, len(p.Weights))
	for i, w := range p.Weights {
		j, ok := byName[w.Name]
		if !ok {
			return nil, fmt.Errorf("weight %q: used by the plan but not stored", w.Name)
		}
		e := entries[j]
		if e.DType != w.DType || !sameShape(w.Shape, e.Shape) {
			return nil, fmt.Errorf("weight %q: stored as %v%v, the plan wants %v%v", w.Name, e.DType, e.Shape, w.DType, w.Shape)
		}
		idx[i] = j
	}
	return idx, nil
}

func sameShape(s ir.Shape, dims []int64) bool {
	if len(s) != len(dims) {
		return false
	}
	for i := range s {
		if int64(s[i]) != dims[i] {
			return false
		}
	}
	return true
}

// maxOpAll is the highest op number of the plan and the stages.
func maxOpAll(meta *Metadata) ir.Op {
	m := maxOp(meta.Plan)
	for _, st := range meta.Stages {
		if st.Plan != nil {
			m = max(m, maxOp(st.Plan))
		}
	}
	return m
}

// maxOp is the highest op number a plan uses.
func maxOp(p *ir.Plan) ir.Op {
	var m ir.Op
	for _, s := range p.Steps {
		m = max(m, s.Op)
	}
	return m
}

// write lays out and writes the file; it checks nothing about the plan, so
// tests can write engines that Create would refuse.
func write(path string, meta *Metadata, entries []WeightEntry, regionLen uint64, fill func(int, []byte) error, opt WriteOptions) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	// Weights: one reusable buffer of the largest tensor's size.
	var largest, total uint64
	for _, e := range entries {
		largest = max(largest, e.Length)
		total += e.Length
	}
	if largest > math.MaxInt {
		return fmt.Errorf("a %d-byte tensor does not fit in memory on this platform", largest)
	}
	buf := make([]byte, largest)
	const weightsOffset = RegionAlign // the header is all that precedes the region
	var done int64
	for i := range entries {
		e := &entries[i]
		dst := buf[:e.Length]
		clear(dst)
		if err := fill(i, dst); err != nil {
			return fmt.Errorf("weight %q: %w", e.Name, err)
		}
		e.Checksum = crc32.Checksum(dst, castagnoli)
		if _, err := f.WriteAt(dst, int64(weightsOffset+e.Offset)); err != nil {
			return fmt.Errorf("weight %q: %w", e.Name, err)
		}
		done += int64(e.Length)
		if opt.Progress != nil {
			opt.Progress(done, int64(total))
		}
	}

	raw, err := encodeMetadata(meta, entries)
	if err != nil {
		return err
	}
	if len(raw) > MaxMetadata {
		return fmt.Errorf("metadata is %d bytes, over the %d-byte limit", len(raw), MaxMetadata)
	}
	stored, comp := raw, CompressNone
	if !opt.UncompressedMetadata {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithSingleSegment(true))
		if err != nil {
			return err
		}
		stored, comp = enc.EncodeAll(raw, nil), CompressZstd
		enc.Close()
	}
	metaOffset, ok := alignUp(weightsOffset+regionLen, metaAlign)
	if !ok {
		return errors.New("file size overflows")
	}
	if _, err := f.WriteAt(stored, int64(metaOffset)); err != nil {
		return fmt.Errorf("writing metadata: %w", err)
	}

	h := Header{
		Major: FormatMajor, Minor: FormatMinor, MaxOp: maxOpAll(meta), HeaderSize: HeaderSize,
		MetaCompression: comp, MetaCRC: crc32.Checksum(stored, castagnoli),
		MetaOffset: metaOffset, MetaStoredLen: uint64(len(stored)), MetaRawLen: uint64(len(raw)),
		WeightsOffset: weightsOffset, WeightsLen: regionLen,
	}
	if _, err := f.WriteAt(h.marshal(), 0); err != nil {
		return fmt.Errorf("writing header: %w", err)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
