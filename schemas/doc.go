// Package schemas holds engine.fbs, the FlatBuffers schema of an engine
// file's metadata section, and (in schemas/pio) the Go bindings flatc
// generates from it. The bindings are committed; regenerate them with
// `go generate ./schemas` or `sh schemas/generate.sh` (flatc 2.0.8), and
// TestGeneratedCurrent fails when they are stale.
//
// The schema describes the metadata only; runtime/engine owns the file
// layout around it and is the only package that should read or write these
// tables directly.
package schemas

//go:generate sh generate.sh
