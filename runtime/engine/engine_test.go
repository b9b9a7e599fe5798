package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inference-pio/pio/ir"
)

// tinyPlan is the smallest useful plan: tokens i32[T] look up rows of
// emb bf16[8, 4] into buffer 0, f32[T, 4], which is the output.
func tinyPlan() *ir.Plan {
	return &ir.Plan{
		Inputs:  []ir.PlanTensor{{Name: "tokens", DType: ir.I32, Shape: ir.Sh(ir.T)}},
		Weights: []ir.PlanTensor{{Name: "emb", DType: ir.BF16, Shape: ir.Sh(8, 4)}},
		Buffers: []ir.Buffer{{DType: ir.F32, Shape: ir.Sh(ir.T, 4), View: -1}},
		Steps: []ir.Step{{
			Op:   ir.OpEmbedding,
			Args: []ir.Ref{{Kind: ir.RefWeight, Index: 0}, {Kind: ir.RefInput, Index: 0}},
			Out:  0,
		}},
		Outputs:   []ir.PlanOutput{{Name: "hidden", Buffer: 0}},
		ArenaPerT: 16,
	}
}

// richPlan uses every part of a plan: inputs, weights, a view, a cache,
// attributes of every kind and an S-sized buffer. Its lists differ in
// length where a decoder reading the wrong field could otherwise pass.
//
//	b0 = embedding(emb, tokens)          f32[T, 4]
//	b1 = rms_norm(b0, norm) {eps}        f32[T, 4]
//	b2 = view of b1                      f32[T, 2, 2]
//	b3 = mrope(b2, pos) {...}            f32[T, 2, 2]
//	b4 = attention(b3, b3, b3) {cache 0} f32[T, 2, 2]
//	b5 = gather_rows(b4, last)           f32[S, 2, 2]
func richPlan() *ir.Plan {
	attrs := func(list ...ir.Attr) ir.Attrs {
		a, err := ir.MakeAttrs(list...)
		if err != nil {
			panic(err)
		}
		return a
	}
	buf := func(perT int64, view int, dims ...ir.Dim) ir.Buffer {
		return ir.Buffer{DType: ir.F32, Shape: ir.Sh(dims...), OffsetPerT: perT, View: view}
	}
	return &ir.Plan{
		Inputs: []ir.PlanTensor{
			{Name: "tokens", DType: ir.I32, Shape: ir.Sh(ir.T)},
			{Name: "positions", DType: ir.I32, Shape: ir.Sh(ir.T, 2)},
			{Name: "last", DType: ir.I32, Shape: ir.Sh(ir.S)},
		},
		Weights: []ir.PlanTensor{
			{Name: "model.embed_tokens.weight", DType: ir.BF16, Shape: ir.Sh(8, 4)},
			{Name: "model.norm.weight", DType: ir.F32, Shape: ir.Sh(4)},
		},
		Buffers: []ir.Buffer{
			buf(0, -1, ir.T, 4),
			buf(64, -1, ir.T, 4),
			buf(64, 1, ir.T, 2, 2),
			buf(128, -1, ir.T, 2, 2),
			buf(192, -1, ir.T, 2, 2),
			buf(256, -1, ir.S, 2, 2),
		},
		Caches: []ir.CacheSpec{{Kind: ir.CacheKV, Layer: 0, DType: ir.BF16, Entries: []ir.Shape{ir.Sh(2, 2), ir.Sh(2, 2)}}},
		Steps: []ir.Step{
			{Op: ir.OpEmbedding, Args: []ir.Ref{{Kind: ir.RefWeight, Index: 0}, {Kind: ir.RefInput, Index: 0}}, Out: 0},
			{Op: ir.OpRMSNorm, Args: []ir.Ref{{Kind: ir.RefBuffer, Index: 0}, {Kind: ir.RefWeight, Index: 1}}, Out: 1,
				Attrs: attrs(ir.Float("eps", 1e-6), ir.Int("unit_offset", 1))},
			{Op: ir.OpMRoPE, Args: []ir.Ref{{Kind: ir.RefBuffer, Index: 2}, {Kind: ir.RefInput, Index: 1}}, Out: 3,
				Attrs: attrs(ir.Float("theta", 1e6), ir.Int("freq_dim", 2), ir.Ints("sections", 1, 0), ir.Str("layout", "chunked"))},
			{Op: ir.OpAttention, Args: []ir.Ref{{Kind: ir.RefBuffer, Index: 3}, {Kind: ir.RefBuffer, Index: 3}, {Kind: ir.RefBuffer, Index: 3}}, Out: 4,
				Attrs: attrs(ir.Int("cache", 0), ir.Float("scale", 1/math.Sqrt2))},
			{Op: ir.OpGatherRows, Args: []ir.Ref{{Kind: ir.RefBuffer, Index: 4}, {Kind: ir.RefInput, Index: 2}}, Out: 5},
		},
		Outputs:   []ir.PlanOutput{{Name: "hidden", Buffer: 5}, {Name: "normed", Buffer: 1}},
		ArenaPerT: 272,
	}
}

func TestTestPlansValid(t *testing.T) {
	for name, p := range map[string]*ir.Plan{"tiny": tinyPlan(), "rich": richPlan()} {
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func testMeta(p *ir.Plan) *Metadata {
	return &Metadata{
		Producer: "engine_test",
		Model: ModelInfo{Name: "tiny", Architecture: "Qwen3ForCausalLM", HFRepo: "pio/tiny",
			ConfigJSON: []byte(`{"hidden_size": 4}`)},
		TokenizerJSON:        []byte(`{"model": {"type": "BPE"}}`),
		TokenizerConfigJSON:  []byte{}, // empty, not absent
		GenerationConfigJSON: []byte(`{"temperature": 0.6}`),
		ChatTemplate:         "{% for m in messages %}{{ m.content }}{% endfor %}",
		Plan:                 p,
	}
}

// specsFor stores the plan's weights, plus an extra tensor the plan does
// not use, in reverse order (file order need not be plan order).
func specsFor(p *ir.Plan) []WeightSpec {
	specs := []WeightSpec{{Name: "extra.bias", DType: ir.F16, Shape: []int64{3}}}
	for i := len(p.Weights) - 1; i >= 0; i-- {
		w := p.Weights[i]
		dims := make([]int64, len(w.Shape))
		for j, d := range w.Shape {
			dims[j] = int64(d)
		}
		specs = append(specs, WeightSpec{Name: w.Name, DType: w.DType, Shape: dims})
	}
	return specs
}

// pattern is weight i's content: distinct bytes per tensor.
func pattern(i int, dst []byte) {
	for j := range dst {
		dst[j] = byte(i*31 + j*7 + 1)
	}
}

func fillPattern(i int, dst []byte) error { pattern(i, dst); return nil }

// build writes an engine and returns its path.
func build(t *testing.T, meta *Metadata, specs []WeightSpec, opt WriteOptions) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "engine.pio")
	if err := Create(path, meta, specs, fillPattern, opt); err != nil {
		t.Fatal(err)
	}
	return path
}

// tinyEngine returns the bytes of a valid small engine.
func tinyEngine(t testing.TB, opt WriteOptions) []byte {
	t.Helper()
	p := tinyPlan()
	path := filepath.Join(t.TempDir(), "engine.pio")
	if err := Create(path, testMeta(p), specsFor(p), fillPattern, opt); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	bare := func(p *ir.Plan) *Metadata { return &Metadata{Plan: p} }
	for _, tc := range []struct {
		name string
		meta func(*ir.Plan) *Metadata
		plan func() *ir.Plan
		opt  WriteOptions
	}{
		{"bare/zstd", bare, tinyPlan, WriteOptions{}},
		{"bare/raw", bare, tinyPlan, WriteOptions{UncompressedMetadata: true}},
		{"tiny/zstd", testMeta, tinyPlan, WriteOptions{}},
		{"tiny/raw", testMeta, tinyPlan, WriteOptions{UncompressedMetadata: true}},
		{"rich/zstd", testMeta, richPlan, WriteOptions{}},
		{"rich/raw", testMeta, richPlan, WriteOptions{UncompressedMetadata: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			meta := tc.meta(tc.plan())
			specs := specsFor(meta.Plan)
			// Compare against fresh values: Create must not modify what it writes.
			want := *tc.meta(tc.plan())
			var progress []int64
			tc.opt.Progress = func(done, total int64) { progress = append(progress, done, total) }
			path := build(t, meta, specs, tc.opt)
			if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
				t.Errorf("%s.tmp left behind (%v)", path, err)
			}
			if len(progress) != 2*len(specs) || progress[len(progress)-2] != progress[len(progress)-1] {
				t.Errorf("progress reports %v, want one per tensor ending at the total", progress)
			}

			e, err := Open(path, OpenOptions{VerifyWeights: true})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			wantComp := CompressZstd
			if tc.opt.UncompressedMetadata {
				wantComp = CompressNone
			}
			if e.Header.MetaCompression != wantComp || e.Header.Major != FormatMajor || e.Header.MaxOp != maxOp(want.Plan) {
				t.Errorf("header %+v", e.Header)
			}
			if e.Header.WeightsOffset%RegionAlign != 0 {
				t.Errorf("weights region at %d, not page aligned", e.Header.WeightsOffset)
			}
			if got, want := ir.PrintPlan(e.Meta.Plan), ir.PrintPlan(want.Plan); got != want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, want)
			}
			if diff := cmp.Diff(e.Meta.Plan, want.Plan); diff != "" {
				t.Errorf("plan (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(e.Meta, want); diff != "" {
				t.Errorf("metadata (-got +want):\n%s", diff)
			}
			if len(e.Weights) != len(specs) {
				t.Fatalf("%d weights, want %d", len(e.Weights), len(specs))
			}
			for i, s := range specs {
				w := e.Weights[i]
				if w.Name != s.Name || w.DType != s.DType || !slices.Equal(w.Shape, s.Shape) {
					t.Errorf("weight %d: %+v, want %+v", i, w, s)
				}
				if w.Offset%TensorAlign != 0 {
					t.Errorf("weight %q at offset %d, not %d-byte aligned", w.Name, w.Offset, TensorAlign)
				}
				want := make([]byte, w.Length)
				pattern(i, want)
				if got := e.WeightData(i); !bytes.Equal(got, want) {
					t.Errorf("weight %q: data %v, want %v", w.Name, got, want)
				}
				if _, got, ok := e.Weight(s.Name); !ok || !bytes.Equal(got, want) {
					t.Errorf("Weight(%q): %v %v", s.Name, got, ok)
				}
			}
			for i, pw := range want.Plan.Weights {
				if got := e.Weights[e.PlanWeights[i]].Name; got != pw.Name {
					t.Errorf("PlanWeights[%d] -> %q, want %q", i, got, pw.Name)
				}
			}
			if _, _, ok := e.Weight("absent"); ok {
				t.Error(`Weight("absent") found something`)
			}
			if e.WeightData(-1) != nil || e.WeightData(len(specs)) != nil {
				t.Error("WeightData out of range returned data")
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if e.WeightData(0) != nil || e.VerifyWeights() == nil {
				t.Error("engine still usable after Close")
			}
		})
	}
}

func TestCreateRefuses(t *testing.T) {
	p := tinyPlan()
	bad := tinyPlan()
	bad.Steps[0].Out = 7
	for _, tc := range []struct {
		name  string
		meta  *Metadata
		specs []WeightSpec
		fill  func(int, []byte) error
		want  string
	}{
		{"no plan", &Metadata{}, nil, fillPattern, "no plan"},
		{"invalid plan", testMeta(bad), specsFor(p), fillPattern, "bad output buffer 7"},
		{"missing weight", testMeta(p), specsFor(p)[:1], fillPattern, `weight "emb": used by the plan but not stored`},
		{"wrong shape", testMeta(p), []WeightSpec{{Name: "emb", DType: ir.BF16, Shape: []int64{4, 8}}}, fillPattern, `weight "emb": stored as bf16[4 8], the plan wants bf16[8, 4]`},
		{"duplicate", testMeta(p), append(specsFor(p), specsFor(p)[1]), fillPattern, `weight "emb": listed twice`},
		{"bad dtype", testMeta(p), append(specsFor(p), WeightSpec{Name: "x", DType: 99}), fillPattern, `weight "x": invalid dtype`},
		{"fill fails", testMeta(p), specsFor(p), func(i int, _ []byte) error {
			if i == 1 {
				return errors.New("disk on fire")
			}
			return nil
		}, `weight "emb": disk on fire`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "engine.pio")
			err := Create(path, tc.meta, tc.specs, tc.fill, WriteOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create: %v, want an error containing %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("failed Create left %v behind", ents)
			}
		})
	}
}

// parseErr parses data and returns the error text ("" on success).
func parseErr(data []byte) string {
	e, err := Parse(data)
	if err != nil {
		return err.Error()
	}
	e.Close()
	return ""
}

func TestBadMagic(t *testing.T) {
	data := tinyEngine(t, WriteOptions{})
	copy(data, "GGUF")
	want := `engine: not an engine file (magic "GGUFNGN\x00", want "PIOENGN\x00")`
	_, err := Parse(data)
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("%v does not wrap ErrCorrupt", err)
	}
}

func TestFutureFormatVersion(t *testing.T) {
	data := tinyEngine(t, WriteOptions{})
	binary.LittleEndian.PutUint16(data[8:], 2)
	binary.LittleEndian.PutUint16(data[10:], 3)
	// A newer major version may change everything after the compatibility
	// block; the error must still be the version, not a corruption.
	clear(data[16:64])
	path := filepath.Join(t.TempDir(), "engine.pio")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, OpenOptions{})
	want := "engine: format version 2.3, this runtime reads 1.x"
	if err == nil || !strings.HasSuffix(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v\nwant %s: %s", err, path, want)
	}
	if !errors.Is(err, ErrIncompatible) {
		t.Errorf("%v does not wrap ErrIncompatible", err)
	}

	// A newer minor version of the same major reads.
	data = tinyEngine(t, WriteOptions{})
	binary.LittleEndian.PutUint16(data[10:], 9)
	if msg := parseErr(data); msg != "" {
		t.Errorf("minor version 1.9: %s", msg)
	}
}

func TestUnknownOp(t *testing.T) {
	unknown := maxKnownOp + 1
	p := tinyPlan()
	p.Steps[0].Op = unknown
	entries, n, err := layoutWeights(specsFor(tinyPlan()))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "engine.pio")
	if err := write(path, testMeta(p), entries, n, fillPattern, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse(data)
	wantOp := fmt.Sprintf("plan uses op %d, but this runtime knows ops only up to %d", unknown, maxKnownOp)
	if err == nil || !strings.Contains(err.Error(), wantOp) || !errors.Is(err, ErrIncompatible) {
		t.Fatalf("got %v, want an incompatibility naming op %d", err, unknown)
	}

	// A header that understates the plan's ops does not slip an unknown op
	// past the check: the step itself is refused, by number.
	binary.LittleEndian.PutUint16(data[12:], uint16(ir.OpEmbedding))
	_, err = Parse(data)
	wantStep := fmt.Sprintf("plan step 0 uses op %d, which this runtime does not know", unknown)
	if err == nil || !strings.Contains(err.Error(), wantStep) {
		t.Fatalf("got %v, want %q", err, wantStep)
	}

	// And a header that disagrees with a known plan is corrupt.
	data = tinyEngine(t, WriteOptions{})
	binary.LittleEndian.PutUint16(data[12:], uint16(ir.OpAdd))
	if msg := parseErr(data); !strings.Contains(msg, "header says the plan's highest op is 11, but the plan uses 3") {
		t.Errorf("got %q", msg)
	}
}

func TestTruncated(t *testing.T) {
	for _, opt := range []WriteOptions{{}, {UncompressedMetadata: true}} {
		data := tinyEngine(t, opt)
		for cut := 0; cut < len(data); cut++ {
			msg := parseErr(data[:cut])
			if msg == "" {
				t.Fatalf("engine cut to %d of %d bytes parsed", cut, len(data))
			}
			if !strings.HasPrefix(msg, "engine: ") {
				t.Fatalf("cut %d: error %q lacks the engine: prefix", cut, msg)
			}
		}
		// Through Open too, at a few places (header, hole, weights, metadata).
		dir := t.TempDir()
		for _, cut := range []int{0, 7, 15, 63, 100, RegionAlign + 10, len(data) - 1} {
			path := filepath.Join(dir, strconv.Itoa(cut))
			if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
				t.Fatal(err)
			}
			if e, err := Open(path, OpenOptions{}); err == nil {
				e.Close()
				t.Errorf("Open of an engine cut to %d bytes succeeded", cut)
			}
		}
	}
}

func TestMetadataChecksum(t *testing.T) {
	for _, opt := range []WriteOptions{{}, {UncompressedMetadata: true}} {
		data := tinyEngine(t, opt)
		h, err := ParseHeader(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []uint64{0, h.MetaStoredLen / 2, h.MetaStoredLen - 1} {
			bad := bytes.Clone(data)
			bad[h.MetaOffset+at] ^= 0x10
			want := "engine: metadata checksum mismatch (file corrupted?)"
			_, err := Parse(bad)
			if err == nil || err.Error() != want || !errors.Is(err, ErrCorrupt) {
				t.Errorf("flip at metadata byte %d: got %v, want %s", at, err, want)
			}
		}
	}
}

func TestWeightChecksum(t *testing.T) {
	p := tinyPlan()
	path := build(t, testMeta(p), specsFor(p), WriteOptions{})
	e, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, _, _ := e.Weight("emb")
	off := int64(e.Header.WeightsOffset + w.Offset + 5)
	e.Close()

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	// Opening without verification succeeds: weights are not read.
	e, err = Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `engine: weight "emb": checksum mismatch (file corrupted?)`
	if err := e.VerifyWeights(); err == nil || err.Error() != want || !errors.Is(err, ErrCorrupt) {
		t.Errorf("VerifyWeights: %v, want %s", err, want)
	}
	if err := e.VerifyWeight(0); err != nil {
		t.Errorf("untouched weight: %v", err)
	}
	e.Close()
	if _, err := Open(path, OpenOptions{VerifyWeights: true}); err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Errorf("Open with VerifyWeights: %v, want ...%s", err, want)
	}
}

// TestCorruptRegions edits header fields so that regions leave the file,
// overlap or overflow; each must be refused, not crash.
func TestCorruptRegions(t *testing.T) {
	valid := tinyEngine(t, WriteOptions{UncompressedMetadata: true})
	h, err := ParseHeader(valid)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(h *Header)
		want string
	}{
		{"weights past end", func(h *Header) { h.WeightsLen = math.MaxUint64 - 100 }, "weights region"},
		{"weights misaligned", func(h *Header) { h.WeightsOffset = 4000 }, "not a multiple of 4096"},
		{"metadata past end", func(h *Header) { h.MetaOffset = math.MaxUint64 - 10 }, "runs past the end"},
		{"metadata in weights", func(h *Header) { h.MetaOffset = h.WeightsOffset }, "overlaps the weights region"},
		{"metadata in header", func(h *Header) { h.MetaOffset = 8 }, "overlaps the header"},
		{"huge raw", func(h *Header) { h.MetaRawLen = 1 << 40 }, "raw length"},
		{"raw mismatch", func(h *Header) { h.MetaRawLen-- }, "stored length"},
		{"small header", func(h *Header) { h.HeaderSize = 10 }, "header size 10"},
		{"flags", func(h *Header) { h.Flags = 1 }, "flags 0x0001"},
		{"compression", func(h *Header) { h.MetaCompression = 7 }, "compression(7)"},
		{"empty metadata", func(h *Header) { h.MetaStoredLen = 0 }, "no metadata"},
		{"region too short", func(h *Header) { h.WeightsLen = 16 }, "runs past the 16-byte weights region"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hh := h
			tc.edit(&hh)
			data := bytes.Clone(valid)
			copy(data, hh.marshal())
			if msg := parseErr(data); !strings.Contains(msg, tc.want) {
				t.Errorf("got %q, want it to mention %q", msg, tc.want)
			}
		})
	}
}

// TestCorruptWeightEntries writes metadata whose weight table is wrong in
// each possible way (with a valid checksum: a buggy writer, not bit rot).
func TestCorruptWeightEntries(t *testing.T) {
	p := tinyPlan()
	for _, tc := range []struct {
		name string
		edit func(es []WeightEntry)
		want string
	}{
		{"misaligned", func(es []WeightEntry) { es[1].Offset += 8 }, "not 64-byte aligned"},
		{"overlap", func(es []WeightEntry) { es[1].Offset = es[0].Offset }, "overlap"},
		{"outside", func(es []WeightEntry) { es[1].Offset = 1 << 40 }, "runs past"},
		{"length", func(es []WeightEntry) { es[1].Length = 3 }, "length 3"},
		{"dtype", func(es []WeightEntry) { es[1].DType = 0 }, "invalid dtype"},
		{"symbolic dim", func(es []WeightEntry) { es[1].Shape[0] = -1 }, "dims must be static"},
		{"empty name", func(es []WeightEntry) { es[0].Name = "" }, "empty name"},
		{"duplicate", func(es []WeightEntry) { es[0].Name = "emb" }, "stored twice"},
		{"missing", func(es []WeightEntry) { es[1].Name = "emb2" }, `weight "emb": used by the plan but not stored`},
		{"plan dtype", func(es []WeightEntry) { es[1].DType = ir.F16 }, "the plan wants bf16[8, 4]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entries, n, err := layoutWeights(specsFor(p))
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(entries)
			data := assemble(t, testMeta(p), entries, n, nil)
			if msg := parseErr(data); !strings.Contains(msg, tc.want) {
				t.Errorf("got %q, want it to mention %q", msg, tc.want)
			}
		})
	}
}

// assemble builds an engine in memory from entries as given (no layout or
// plan checks); tensor bytes come from data when set.
func assemble(t testing.TB, meta *Metadata, entries []WeightEntry, regionLen uint64, data map[int][]byte) []byte {
	t.Helper()
	raw, err := encodeMetadata(meta, entries)
	if err != nil {
		t.Fatal(err)
	}
	metaOff, _ := alignUp(RegionAlign+regionLen, metaAlign)
	h := Header{Major: FormatMajor, HeaderSize: HeaderSize, MaxOp: maxOp(meta.Plan),
		MetaCRC: crc32.Checksum(raw, castagnoli), MetaOffset: metaOff,
		MetaStoredLen: uint64(len(raw)), MetaRawLen: uint64(len(raw)),
		WeightsOffset: RegionAlign, WeightsLen: regionLen}
	out := make([]byte, metaOff+uint64(len(raw)))
	copy(out, h.marshal())
	copy(out[metaOff:], raw)
	for i, d := range data {
		copy(out[RegionAlign+entries[i].Offset:], d)
	}
	return out
}

// TestMalformedPlan stores plans that decode but are invalid or break the
// FlatBuffer-level rules (attribute order, kinds).
func TestMalformedPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *ir.Plan)
		want string
	}{
		{"bad ref", func(p *ir.Plan) { p.Steps[0].Args[1].Index = 5 }, "operand in5 out of range"},
		{"unsorted attrs", func(p *ir.Plan) {
			p.Steps[0].Attrs = ir.Attrs{ir.Int("b", 1), ir.Int("a", 1)}
		}, `attributes not sorted by key or duplicated ("a" after "b")`},
		{"attr kind", func(p *ir.Plan) { p.Steps[0].Attrs = ir.Attrs{{Key: "k", Kind: 9}} }, `attribute "k" has unknown kind 9`},
		{"arena", func(p *ir.Plan) { p.ArenaPerT = 8 }, "outside the arena"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tinyPlan()
			tc.edit(p)
			entries, n, err := layoutWeights(specsFor(p))
			if err != nil {
				t.Fatal(err)
			}
			msg := parseErr(assemble(t, testMeta(p), entries, n, nil))
			if !strings.Contains(msg, tc.want) || !strings.HasPrefix(msg, "engine: ") {
				t.Errorf("got %q, want it to mention %q", msg, tc.want)
			}
		})
	}
}

func TestHeaderLargeValues(t *testing.T) {
	h := Header{Major: FormatMajor, Minor: 7, MaxOp: ir.OpAdd, HeaderSize: HeaderSize, Flags: 0x100,
		MetaCompression: CompressZstd, MetaCRC: 0xdeadbeef,
		MetaOffset: 4096 + 5<<32, MetaStoredLen: 1 << 20, MetaRawLen: 1 << 30,
		WeightsOffset: 4096, WeightsLen: 5 << 32}
	got, err := ParseHeader(h.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got != h {
		t.Errorf("header round trip:\n got %+v\nwant %+v", got, h)
	}
	size := h.MetaOffset + h.MetaStoredLen
	if err := got.checkRegions(size); err != nil {
		t.Errorf("regions of a %d-byte file: %v", size, err)
	}
	if err := got.checkRegions(size - 1); err == nil {
		t.Error("metadata past the end of the file not detected")
	}
}

// TestOver4GiB stores a tensor beyond 4 GiB in a sparse file: a 5 GiB
// tensor of zeros that is never written (a hole), then the plan's weight.
func TestOver4GiB(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("a 5 GiB mapping needs a 64-bit platform")
	}
	p := tinyPlan()
	const big int64 = 5 << 30
	specs := []WeightSpec{{Name: "padding", DType: ir.U8, Shape: []int64{big}}, specsFor(p)[1]}
	entries, n, err := layoutWeights(specs)
	if err != nil {
		t.Fatal(err)
	}
	emb := make([]byte, entries[1].Length)
	pattern(1, emb)
	zeros := make([]byte, 1<<20)
	var crc uint32
	for range big / int64(len(zeros)) {
		crc = crc32.Update(crc, castagnoli, zeros)
	}
	entries[0].Checksum = crc
	entries[1].Checksum = crc32.Checksum(emb, castagnoli)

	raw, err := encodeMetadata(testMeta(p), entries)
	if err != nil {
		t.Fatal(err)
	}
	metaOff, _ := alignUp(RegionAlign+n, metaAlign)
	h := Header{Major: FormatMajor, HeaderSize: HeaderSize, MaxOp: maxOp(p),
		MetaCRC: crc32.Checksum(raw, castagnoli), MetaOffset: metaOff,
		MetaStoredLen: uint64(len(raw)), MetaRawLen: uint64(len(raw)),
		WeightsOffset: RegionAlign, WeightsLen: n}
	path := filepath.Join(t.TempDir(), "big.pio")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		b   []byte
		off uint64
	}{{h.marshal(), 0}, {emb, RegionAlign + entries[1].Offset}, {raw, metaOff}} {
		if _, err := f.WriteAt(w.b, int64(w.off)); err != nil {
			t.Skipf("cannot write a sparse %d-byte file here: %v", metaOff, err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	e, err := Open(path, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	w, data, ok := e.Weight("emb")
	if !ok || w.Offset < 1<<32 || e.Header.MetaOffset < 1<<32 {
		t.Fatalf("emb at %d, metadata at %d: want both beyond 4 GiB", w.Offset, e.Header.MetaOffset)
	}
	if !bytes.Equal(data, emb) {
		t.Errorf("emb beyond 4 GiB reads %v, want %v", data, emb)
	}
	if err := e.VerifyWeight(1); err != nil {
		t.Error(err)
	}
}
