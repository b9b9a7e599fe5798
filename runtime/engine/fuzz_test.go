package engine

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to the reader: it must return an error or
// a consistent engine, and never panic. Each input is tried as it is and
// with its metadata checksum repaired, so that mutations reach the
// decompressor, the FlatBuffer decoder and the plan checks instead of
// stopping at the CRC.
//
// A real engine is mostly the zero padding between the header and the
// page-aligned weights region, which makes the fuzzer slow to minimise
// inputs; so the seeds are engines with that padding cut out, and each input
// is also tried with it put back (expand).
//
//	go test -fuzz FuzzParse -fuzztime 30s ./runtime/engine
//
// (Adding -fuzzminimizetime 2s explores faster: minimising each new input
// for the default 60s dominates short runs.)
func FuzzParse(f *testing.F) {
	f.Add(compact(f, tinyEngine(f, WriteOptions{})))
	f.Add(compact(f, tinyEngine(f, WriteOptions{UncompressedMetadata: true})))
	rich := richPlan()
	entries, n, err := layoutWeights(specsFor(rich))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(compact(f, assemble(f, testMeta(rich), entries, n, nil)))
	staged := testMeta(rich) // a two-stage engine (format 1.2)
	vision := tinyPlan()
	vision.Weights[0].Name = "model.embed_tokens.weight"
	staged.Stages = []Stage{{Name: "vision", Plan: vision}}
	f.Add(compact(f, assemble(f, staged, entries, n, nil)))
	stagedCUDA := stagedMeta(testKernels(), testKernels()) // kernels on the main plan and the stage (format 1.3)
	f.Add(compact(f, assemble(f, stagedCUDA, entries, n, nil)))
	cudaMeta := testMeta(rich) // with a CUDA kernels section (format 1.1)
	cudaMeta.Kernels = testKernels()
	f.Add(compact(f, assemble(f, cudaMeta, entries, n, nil)))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range [][]byte{data, expand(data)} {
			checkParse(t, d)
			if fixed, ok := fixMetaCRC(d); ok {
				checkParse(t, fixed)
			}
		}
	})
}

// compact cuts the padding between the header and the weights region out
// of a valid engine; expand puts it back.
func compact(tb testing.TB, data []byte) []byte {
	tb.Helper()
	if len(data) < RegionAlign || !bytes.Equal(data[HeaderSize:RegionAlign], make([]byte, RegionAlign-HeaderSize)) {
		tb.Fatal("not an engine with a padded header")
	}
	c := expand(append(bytes.Clone(data[:HeaderSize]), data[RegionAlign:]...))
	if !bytes.Equal(c, data) {
		tb.Fatal("compact does not invert expand")
	}
	return append(bytes.Clone(data[:HeaderSize]), data[RegionAlign:]...)
}

func expand(data []byte) []byte {
	if len(data) < HeaderSize {
		return data
	}
	out := make([]byte, 0, len(data)+RegionAlign-HeaderSize)
	out = append(out, data[:HeaderSize]...)
	out = append(out, make([]byte, RegionAlign-HeaderSize)...)
	return append(out, data[HeaderSize:]...)
}

// FuzzMetadata fuzzes the FlatBuffer decoder and the checks after it
// directly, without the header and checksum in the way.
func FuzzMetadata(f *testing.F) {
	for _, p := range []*Metadata{testMeta(tinyPlan()), testMeta(richPlan()), stagedMeta(testKernels(), testKernels())} {
		entries, _, err := layoutWeights(specsFor(p.Plan))
		if err != nil {
			f.Fatal(err)
		}
		raw, err := encodeMetadata(p, entries)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		meta, weights, err := decodeMetadata(raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "engine: ") {
				t.Fatalf("error without the engine: prefix: %v", err)
			}
			return
		}
		if err := checkPlan(meta.Plan, maxOp(meta.Plan)); err != nil {
			return
		}
		checkWeights(meta.Plan, weights, 1<<40)
	})
}

func checkParse(t *testing.T, data []byte) {
	e, err := Parse(data)
	if err != nil {
		if !strings.HasPrefix(err.Error(), "engine: ") {
			t.Fatalf("error without the engine: prefix: %v", err)
		}
		return
	}
	defer e.Close()
	if e.Meta.Plan == nil {
		t.Fatal("engine without a plan")
	}
	if len(e.PlanWeights) != len(e.Meta.Plan.Weights) {
		t.Fatalf("%d plan weights mapped, plan has %d", len(e.PlanWeights), len(e.Meta.Plan.Weights))
	}
	for i, w := range e.Weights {
		d := e.WeightData(i)
		if uint64(len(d)) != w.Length {
			t.Fatalf("weight %q: %d bytes, entry says %d", w.Name, len(d), w.Length)
		}
	}
	e.VerifyWeights()
}

// fixMetaCRC returns a copy of data whose header CRC matches the metadata
// region it names, when the header is readable enough to name one.
func fixMetaCRC(data []byte) ([]byte, bool) {
	if len(data) < HeaderSize || !bytes.HasPrefix(data, []byte(Magic)) {
		return nil, false
	}
	off, n := binary.LittleEndian.Uint64(data[24:]), binary.LittleEndian.Uint64(data[32:])
	if off > uint64(len(data)) || n > uint64(len(data))-off {
		return nil, false
	}
	fixed := bytes.Clone(data)
	binary.LittleEndian.PutUint32(fixed[20:], crc32.Checksum(fixed[off:off+n], castagnoli))
	return fixed, !bytes.Equal(fixed, data)
}
