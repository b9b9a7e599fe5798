package ir

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// AttrKind says which field of an AttrValue is set.
type AttrKind uint8

const (
	AttrInt    AttrKind = 1
	AttrFloat  AttrKind = 2
	AttrString AttrKind = 3
	AttrInts   AttrKind = 4
)

// Attr is one named attribute of a Value.
type Attr struct {
	Key  string
	Kind AttrKind
	I    int64
	F    float64
	S    string
	Is   []int64
}

// Int, Float, Str and Ints build attributes.
func Int(key string, v int64) Attr     { return Attr{Key: key, Kind: AttrInt, I: v} }
func Float(key string, v float64) Attr { return Attr{Key: key, Kind: AttrFloat, F: v} }
func Str(key string, v string) Attr    { return Attr{Key: key, Kind: AttrString, S: v} }
func Ints(key string, v ...int64) Attr {
	return Attr{Key: key, Kind: AttrInts, Is: append([]int64(nil), v...)}
}

// Attrs is a Value's attribute list, kept sorted by key so that printing,
// hashing and comparison are deterministic.
type Attrs []Attr

// MakeAttrs sorts the attributes by key and rejects duplicates, unknown
// kinds and keys that are not identifiers (the text form prints keys bare).
func MakeAttrs(list ...Attr) (Attrs, error) {
	a := append(Attrs(nil), list...)
	sort.SliceStable(a, func(i, j int) bool { return a[i].Key < a[j].Key })
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// check reports whether a is well formed: identifier keys, strictly sorted
// (so unique), every kind known. Lookups binary-search, so an unsorted list
// would silently lose attributes.
func (a Attrs) check() error {
	for i, at := range a {
		if !isIdent(at.Key) {
			return fmt.Errorf("attribute key %q is not an identifier", at.Key)
		}
		if at.Kind < AttrInt || at.Kind > AttrInts {
			return fmt.Errorf("attribute %q: unknown kind %d", at.Key, at.Kind)
		}
		if i > 0 && at.Key == a[i-1].Key {
			return fmt.Errorf("duplicate attribute %q", at.Key)
		}
		if i > 0 && at.Key < a[i-1].Key {
			return fmt.Errorf("attributes not sorted: %q after %q", at.Key, a[i-1].Key)
		}
	}
	return nil
}

// isIdent reports whether s is [A-Za-z_][A-Za-z0-9_]*.
func isIdent(s string) bool {
	if s == "" {
		return false
	}
	if !isIdentStart(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isIdentChar(s[i]) {
			return false
		}
	}
	return true
}

func (a Attrs) find(key string) (Attr, bool) {
	i := sort.Search(len(a), func(i int) bool { return a[i].Key >= key })
	if i < len(a) && a[i].Key == key {
		return a[i], true
	}
	return Attr{}, false
}

// Has reports whether key is set. Values are read through the op's
// declarations (AttrReader, schema.go), which give absent ones their
// defaults.
func (a Attrs) Has(key string) bool { _, ok := a.find(key); return ok }

// Equal reports whether two attribute lists are identical.
func (a Attrs) Equal(b Attrs) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key || a[i].valueString() != b[i].valueString() {
			return false
		}
	}
	return true
}

// Format prints "{a=1, b="x"}" (empty for no attributes).
func (a Attrs) Format() string {
	if len(a) == 0 {
		return ""
	}
	parts := make([]string, len(a))
	for i, at := range a {
		parts[i] = at.Key + "=" + at.valueString()
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func (at Attr) valueString() string {
	switch at.Kind {
	case AttrInt:
		return strconv.FormatInt(at.I, 10)
	case AttrFloat:
		return formatFloat(at.F)
	case AttrString:
		return strconv.Quote(at.S)
	case AttrInts:
		parts := make([]string, len(at.Is))
		for i, v := range at.Is {
			parts[i] = strconv.FormatInt(v, 10)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return "?"
}

// formatFloat prints a float so that it round-trips exactly and always reads
// as a float (never as an integer).
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	case math.IsNaN(f):
		return "nan"
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}
