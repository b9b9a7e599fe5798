package engine

import (
	"fmt"
	"hash/crc32"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/inference-pio/pio/ir"
)

// Engine is an opened engine file. Meta and Weights are plain Go values
// (they stay valid after Close); the weight bytes are slices of the file's
// mapping and are valid only until Close.
type Engine struct {
	Header  Header
	Meta    Metadata
	Weights []WeightEntry
	// PlanWeights[i] is the index in Weights of Meta.Plan.Weights[i].
	PlanWeights []int
	// StageWeights[k][i] is the index in Weights of Meta.Stages[k].Plan.Weights[i].
	StageWeights [][]int

	data   []byte
	byName map[string]int
	unmap  func() error
	closed bool
}

// OpenOptions tunes Open.
type OpenOptions struct {
	// VerifyWeights checks every tensor's CRC-32C while opening, which
	// reads the whole file; without it only the metadata checksum is
	// checked (call Engine.VerifyWeights later, or never).
	VerifyWeights bool
}

// Open maps the engine at path read-only and checks it (see Parse). The
// file must not be modified while it is open; Create replaces engines by
// rename, which is safe.
func Open(path string, opt OpenOptions) (*Engine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("engine: %s is not a regular file", path)
	}
	data, unmap, err := mapFile(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("engine: mapping %s: %w", path, err)
	}
	e, err := Parse(data)
	if err == nil && opt.VerifyWeights {
		err = e.VerifyWeights()
	}
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	e.unmap = unmap
	return e, nil
}

// Parse reads an engine from memory without copying the weights: the
// returned Engine's weight slices alias data. It checks the header, that
// every region and tensor lies inside data, the metadata checksum, the
// FlatBuffer's structure, the plan (ir.Plan.Validate) and that every weight
// the plan uses is stored with its dtype and shape. It never panics.
func Parse(data []byte) (*Engine, error) {
	h, err := ParseHeader(data)
	if err != nil {
		return nil, err
	}
	if err := h.checkRegions(uint64(len(data))); err != nil {
		return nil, err
	}
	stored := data[h.MetaOffset : h.MetaOffset+h.MetaStoredLen]
	if crc32.Checksum(stored, castagnoli) != h.MetaCRC {
		return nil, corrupt("metadata checksum mismatch (file corrupted?)")
	}
	raw := stored
	if h.MetaCompression == CompressZstd {
		if raw, err = decompress(stored, h.MetaRawLen); err != nil {
			return nil, err
		}
	}
	meta, weights, err := decodeMetadata(raw)
	if err != nil {
		return nil, err
	}
	mainMax := h.MaxOp
	if len(meta.Stages) > 0 { // the header's MaxOp covers every plan
		if m := maxOpAll(meta); m != h.MaxOp {
			return nil, corrupt("header says the plans' highest op is %d, but they use %d", uint16(h.MaxOp), uint16(m))
		}
		mainMax = maxOp(meta.Plan)
	}
	if err := checkPlan(meta.Plan, mainMax); err != nil {
		return nil, err
	}
	planWeights, err := checkWeights(meta.Plan, weights, h.WeightsLen)
	if err != nil {
		return nil, err
	}
	stageWeights, err := checkStages(meta.Stages, weights, h)
	if err != nil {
		return nil, err
	}
	e := &Engine{Header: h, Meta: *meta, Weights: weights, PlanWeights: planWeights, StageWeights: stageWeights, data: data}
	e.byName = make(map[string]int, len(weights))
	for i, w := range weights {
		e.byName[w.Name] = i
	}
	return e, nil
}

// decompress decodes the zstd metadata, refusing to produce much more than
// the header's raw length (at most MaxMetadata). Frames may declare a window
// larger than their content (the zstd tool's default is 8 MiB), so the cap
// is never below that.
func decompress(stored []byte, rawLen uint64) ([]byte, error) {
	limit := max(rawLen, 8<<20)
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(limit), zstd.WithDecoderMaxWindow(limit))
	if err != nil {
		return nil, fmt.Errorf("engine: zstd: %w", err)
	}
	defer d.Close()
	raw, err := d.DecodeAll(stored, nil)
	if err != nil {
		return nil, corrupt("corrupt metadata: zstd: %w", err)
	}
	if uint64(len(raw)) != rawLen {
		return nil, corrupt("corrupt metadata: decompressed to %d bytes, the header says %d", len(raw), rawLen)
	}
	return raw, nil
}

// checkPlan checks that the plan uses only ops this runtime knows, agrees
// with the header's highest op, and is valid. A retired op (an engine built
// before it was retired) is rewritten to the op that replaced it
// (ir.Plan.Upgrade) before the plan is validated.
func checkPlan(p *ir.Plan, headerMax ir.Op) error {
	for i, s := range p.Steps {
		_, ok := s.Op.Info()
		if _, retired := s.Op.Retired(); !ok && !retired {
			return incompatible("plan step %d uses op %d, which this runtime does not know (it knows ops up to %d): update the runtime or rebuild the engine", i, uint16(s.Op), uint16(maxKnownOp))
		}
	}
	if m := maxOp(p); m != headerMax {
		return corrupt("header says the plan's highest op is %d, but the plan uses %d", uint16(headerMax), uint16(m))
	}
	if err := p.Upgrade(); err != nil {
		return corrupt("%w", err)
	}
	if err := p.Validate(); err != nil {
		return corrupt("%w", err)
	}
	return nil
}

// checkWeights checks every entry (a known dtype, a static shape whose size
// is its length, aligned, inside the region, no overlaps, unique names) and
// maps the plan's weights to entries.
func checkWeights(p *ir.Plan, weights []WeightEntry, regionLen uint64) ([]int, error) {
	for _, w := range weights {
		if w.Name == "" {
			return nil, corrupt("weight with an empty name")
		}
		n, err := tensorBytes(w.DType, w.Shape)
		if err != nil {
			return nil, corrupt("weight %q: %v", w.Name, err)
		}
		if n != w.Length {
			return nil, corrupt("weight %q: length %d, but %v%v takes %d bytes", w.Name, w.Length, w.DType, w.Shape, n)
		}
		if w.Offset%TensorAlign != 0 {
			return nil, corrupt("weight %q: offset %d is not %d-byte aligned", w.Name, w.Offset, TensorAlign)
		}
		if w.Offset > regionLen || w.Length > regionLen-w.Offset {
			return nil, corrupt("weight %q: [%d, +%d) runs past the %d-byte weights region", w.Name, w.Offset, w.Length, regionLen)
		}
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return weights[order[a]].Offset < weights[order[b]].Offset })
	for k := 1; k < len(order); k++ {
		prev, cur := weights[order[k-1]], weights[order[k]]
		if prev.Offset+prev.Length > cur.Offset {
			return nil, corrupt("weights %q and %q overlap", prev.Name, cur.Name)
		}
	}
	idx, err := matchPlanWeights(p, weights)
	if err != nil {
		return nil, corrupt("%w", err)
	}
	return idx, nil
}

// WeightData returns the bytes of weight i: a read-only, zero-copy slice of
// the file's mapping, valid until Close. It returns nil for an index out of
// range or a closed engine.
func (e *Engine) WeightData(i int) []byte {
	if e.closed || i < 0 || i >= len(e.Weights) {
		return nil
	}
	w := e.Weights[i]
	start := e.Header.WeightsOffset + w.Offset
	end := start + w.Length
	return e.data[start:end:end]
}

// Weight finds a weight by its checkpoint name.
func (e *Engine) Weight(name string) (WeightEntry, []byte, bool) {
	i, ok := e.byName[name]
	if !ok {
		return WeightEntry{}, nil, false
	}
	return e.Weights[i], e.WeightData(i), true
}

// VerifyWeight checks weight i's CRC-32C.
func (e *Engine) VerifyWeight(i int) error {
	if e.closed {
		return fmt.Errorf("engine: closed")
	}
	if i < 0 || i >= len(e.Weights) {
		return fmt.Errorf("engine: weight %d out of range", i)
	}
	if crc32.Checksum(e.WeightData(i), castagnoli) != e.Weights[i].Checksum {
		return corrupt("weight %q: checksum mismatch (file corrupted?)", e.Weights[i].Name)
	}
	return nil
}

// VerifyWeights checks every tensor's CRC-32C, on all CPUs, and reports the
// first (in file order) that does not match.
func (e *Engine) VerifyWeights() error {
	errs := make([]error, len(e.Weights))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(e.Weights)) {
		wg.Go(func() {
			for i := range next {
				errs[i] = e.VerifyWeight(i)
			}
		})
	}
	for i := range e.Weights {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Close unmaps the file. Weight slices obtained before must not be used
// afterwards; Meta and Weights stay valid.
func (e *Engine) Close() error {
	if e.closed {
		return nil
	}
	e.closed = true
	e.data = nil
	if e.unmap != nil {
		return e.unmap()
	}
	return nil
}

// checkStages checks each stage as Parse checks the main plan, and that
// stage names are present and unique.
func checkStages(stages []Stage, weights []WeightEntry, h Header) ([][]int, error) {
	var out [][]int
	seen := map[string]bool{}
	for k, st := range stages {
		if st.Name == "" || seen[st.Name] {
			return nil, corrupt("stage %d: empty or repeated name %q", k, st.Name)
		}
		seen[st.Name] = true
		if err := checkPlan(st.Plan, maxOp(st.Plan)); err != nil {
			return nil, inStage(st.Name, err)
		}
		w, err := checkWeights(st.Plan, weights, h.WeightsLen)
		if err != nil {
			return nil, inStage(st.Name, err)
		}
		out = append(out, w)
	}
	return out, nil
}

// inStage prefixes an error of a stage's checks with the stage's name,
// keeping its "engine: " prefix and its ErrCorrupt / ErrIncompatible kind.
func inStage(name string, err error) error {
	if fe, ok := err.(*formatError); ok {
		return &formatError{kind: fe.kind, msg: fmt.Sprintf("engine: stage %q: %s", name, strings.TrimPrefix(fe.msg, "engine: ")), cause: fe.cause}
	}
	return fmt.Errorf("engine: stage %q: %w", name, err)
}
