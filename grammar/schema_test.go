package grammar

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// testSchema is one schema of testdata/schemas, with its examples and an
// independent validator (santhosh-tekuri/jsonschema, formats asserted).
type testSchema struct {
	name      string
	src       []byte
	grammar   *Grammar
	validator *jsonschema.Schema
	examples  []any
}

func loadSchemas(t testing.TB) []testSchema {
	t.Helper()
	files, err := filepath.Glob("testdata/schemas/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schemas in testdata/schemas: %v", err)
	}
	var out []testSchema
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ts := testSchema{name: filepath.Base(f), src: src}
		if ts.grammar, err = JSONSchema(src); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		c := jsonschema.NewCompiler()
		c.AssertFormat()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(src))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource(ts.name, doc); err != nil {
			t.Fatal(err)
		}
		if ts.validator, err = c.Compile(ts.name); err != nil {
			t.Fatalf("%s: the validator rejects the schema: %v", f, err)
		}
		v, _ := decodeOrdered(src)
		if ex, ok := v.(*object).get("examples"); ok {
			ts.examples = ex.([]any)
		}
		out = append(out, ts)
	}
	return out
}

func (ts *testSchema) validate(s string) error {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		return err
	}
	return ts.validator.Validate(inst)
}

// encodeSpaced writes v with a single space after : and , (the other form
// the whitespace policy admits besides the compact one).
func encodeSpaced(v any) string {
	var b strings.Builder
	encodeCompact(&b, v)
	var out strings.Builder
	inString, escaped := false, false
	for _, r := range b.String() {
		out.WriteRune(r)
		switch {
		case escaped:
			escaped = false
		case r == '\\' && inString:
			escaped = true
		case r == '"':
			inString = !inString
		case (r == ':' || r == ',') && !inString:
			out.WriteByte(' ')
		}
	}
	return out.String()
}

// TestSchemaExamples: every example of every schema is valid (the
// validator says so) and the schema's grammar accepts it, compact or spaced.
func TestSchemaExamples(t *testing.T) {
	for _, ts := range loadSchemas(t) {
		if len(ts.examples) == 0 {
			t.Errorf("%s: no examples", ts.name)
		}
		for _, ex := range ts.examples {
			var b strings.Builder
			encodeCompact(&b, ex)
			for _, s := range []string{b.String(), encodeSpaced(ex)} {
				if err := ts.validate(s); err != nil {
					t.Errorf("%s: example %s is invalid: %v", ts.name, s, err)
				}
				if !matches(ts.grammar, s) {
					t.Errorf("%s: the grammar rejects example %s", ts.name, s)
				}
			}
		}
	}
}

// randomWalk is a random sentence of g (RandomSentence), leaning towards
// closing quotes and brackets so that walks finish.
func randomWalk(t testing.TB, g *Grammar, rng *rand.Rand, maxLen int) (string, bool) {
	t.Helper()
	s, ok, err := g.RandomSentence(rng, SentenceOptions{MaxLen: maxLen, Closers: `"]}`})
	if err != nil {
		t.Fatal(err)
	}
	return s, ok
}

// TestSchemaRandomWalks: hundreds of random sentences of each schema's
// grammar are valid JSON that the independent validator accepts.
func TestSchemaRandomWalks(t *testing.T) {
	const walks = 300
	for i, ts := range loadSchemas(t) {
		rng := rand.New(rand.NewPCG(uint64(i), 19))
		done := 0
		for range walks {
			s, ok := randomWalk(t, ts.grammar, rng, 4000)
			if !ok {
				continue
			}
			done++
			if err := ts.validate(s); err != nil {
				t.Errorf("%s: generated %s, invalid: %v", ts.name, s, err)
			}
		}
		if done < walks*9/10 {
			t.Errorf("%s: only %d of %d walks finished", ts.name, done, walks)
		}
	}
}

func TestSchemaErrors(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type": "object", "patternProperties": {"a": {}}, "minProperties": 1}`, "unsupported keywords patternProperties, minProperties"},
		{`{"type": "array", "uniqueItems": true}`, "unsupported keywords uniqueItems"},
		{`{"type": "string", "format": "ipv6"}`, `unsupported format "ipv6"`},
		{`{"$ref": "http://example.com/s.json"}`, "only local references"},
		{`{"$ref": "#/$defs/missing"}`, `no "$defs"`},
		{`{"type": "strin"}`, "unknown type strin"},
		{`{"allOf": [{"type": "string"}, {"type": "integer"}]}`, "cannot merge two values of type"},
		{`{"type": "integer", "minimum": 5, "maximum": 4}`, "no integer lies within the bounds"},
		{`{"type": "string", "pattern": "(?=x)"}`, "lookaround"},
		{`{"type": "object", "properties": {}, "required": ["a"]}`, `required property "a" is not declared`},
		{`{"type": "object"`, "schema: unexpected EOF"},
		{`{"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}, "additionalProperties": false}]}`, `additionalProperties rejects property "a"`},
	} {
		_, err := JSONSchema([]byte(tc.schema))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("JSONSchema(%s) = %v, want an error containing %q", tc.schema, err, tc.want)
		}
	}
}

// TestIntegerRanges checks intRange against every integer near its bounds.
func TestIntegerRanges(t *testing.T) {
	for _, tc := range []struct{ schema string }{
		{`{"type": "integer", "minimum": -37, "maximum": 1204}`},
		{`{"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 100}`},
		{`{"type": "integer", "minimum": 95}`},
		{`{"type": "integer", "maximum": -5}`},
		{`{"type": "integer", "minimum": 0.5, "maximum": 10.5}`},
	} {
		ts := testSchemaFrom(t, tc.schema)
		for n := -1500; n <= 1500; n++ {
			s := strconvItoa(n)
			want := ts.validate(s) == nil
			if got := matches(ts.grammar, s); got != want {
				t.Errorf("%s: %s matched=%v, validator says %v", tc.schema, s, got, want)
			}
		}
	}
}

func strconvItoa(n int) string {
	var b strings.Builder
	encodeCompact(&b, jsonNumber(n))
	return b.String()
}

func testSchemaFrom(t *testing.T, schema string) testSchema {
	t.Helper()
	dir := t.TempDir()
	ts := testSchema{name: "s.json", src: []byte(schema)}
	var err error
	if ts.grammar, err = JSONSchema(ts.src); err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	doc, _ := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	_ = dir
	if err := c.AddResource("s.json", doc); err != nil {
		t.Fatal(err)
	}
	if ts.validator, err = c.Compile("s.json"); err != nil {
		t.Fatal(err)
	}
	return ts
}
