// Package schemacheck loads the JSON Schemas of grammar/testdata with an
// independent validator (santhosh-tekuri/jsonschema, formats asserted), for
// the tests that check structured output end to end (pio, server).
package schemacheck

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema is one schema's source and its validator.
type Schema struct {
	Name string
	Src  []byte
	v    *jsonschema.Schema
}

// Load reads grammar/testdata/schemas/<name>.json, dir being the path from
// the test's package to the repository root ("..").
func Load(tb testing.TB, dir, name string) *Schema {
	tb.Helper()
	src, err := os.ReadFile(filepath.Join(dir, "grammar", "testdata", "schemas", name+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	return Compile(tb, name, src)
}

// Compile is the validator of the schema src (named name in errors).
func Compile(tb testing.TB, name string, src []byte) *Schema {
	tb.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.AddResource(name, doc); err != nil {
		tb.Fatal(err)
	}
	v, err := c.Compile(name)
	if err != nil {
		tb.Fatalf("%s: the validator rejects the schema: %v", name, err)
	}
	return &Schema{Name: name, Src: src, v: v}
}

// Validate parses s and validates it against the schema.
func (s *Schema) Validate(text string) error {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return err
	}
	return s.v.Validate(inst)
}
