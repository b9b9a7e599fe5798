package ir

import (
	"fmt"
	"sort"
	"strings"
)

// Every op declares its attributes in its OpInfo (AttrSpec: key, type,
// whether required, the default of an optional one). The verifier rejects
// a value whose attributes are not what its op declares (an unknown key, a
// wrong type, a bool that is not 0 or 1, a missing required key), and code
// reads attributes through an AttrReader, which takes an absent optional
// attribute's value from the schema: no reader states a default of its own.

// AttrType is the type an op declares for an attribute. A bool is stored
// as an integer attribute holding 0 or 1 (so engines and the text form
// keep that spelling); a float attribute may hold an integer, which reads
// as a float.
type AttrType uint8

const (
	TInt AttrType = iota + 1
	TFloat
	TBool
	TString
	TInts
)

var attrTypeNames = [...]string{TInt: "an integer", TFloat: "a float", TBool: "a bool (0 or 1)", TString: "a string", TInts: "an integer list"}

func (t AttrType) String() string {
	if int(t) < len(attrTypeNames) && attrTypeNames[t] != "" {
		return attrTypeNames[t]
	}
	return fmt.Sprintf("attrtype(%d)", uint8(t))
}

// accepts reports whether an attribute stored as kind k has type t.
func (t AttrType) accepts(k AttrKind) bool {
	switch t {
	case TInt, TBool:
		return k == AttrInt
	case TFloat:
		return k == AttrFloat || k == AttrInt
	case TString:
		return k == AttrString
	case TInts:
		return k == AttrInts
	}
	return false
}

// AttrSpec declares one attribute of an op.
type AttrSpec struct {
	Key      string
	Type     AttrType
	Required bool
	// Default is the value an absent optional attribute reads as (its Key
	// is Key); an optional integer list defaults to the empty list.
	Default Attr
	// SameAs, when set, names the attribute of the same op whose value an
	// absent one reads as (qkv_attention's v_head_dim is head_dim), in
	// place of Default.
	SameAs string
}

// req declares a required attribute; the opt* helpers declare optional
// ones with their defaults.
func req(key string, t AttrType) AttrSpec { return AttrSpec{Key: key, Type: t, Required: true} }
func optInt(key string, def int64) AttrSpec {
	return AttrSpec{Key: key, Type: TInt, Default: Int(key, def)}
}
func optFloat(key string, def float64) AttrSpec {
	return AttrSpec{Key: key, Type: TFloat, Default: Float(key, def)}
}
func optBool(key string) AttrSpec { return AttrSpec{Key: key, Type: TBool, Default: Int(key, 0)} }
func optString(key, def string) AttrSpec {
	return AttrSpec{Key: key, Type: TString, Default: Str(key, def)}
}
func optInts(key string) AttrSpec { return AttrSpec{Key: key, Type: TInts, Default: Ints(key)} }
func optIntSameAs(key, other string) AttrSpec {
	return AttrSpec{Key: key, Type: TInt, SameAs: other}
}

// Attr returns the declaration of attribute key, if the op has one.
func (info OpInfo) Attr(key string) (AttrSpec, bool) {
	for _, s := range info.Attrs {
		if s.Key == key {
			return s, true
		}
	}
	return AttrSpec{}, false
}

// attrKeys lists the declared keys, for error messages.
func (info OpInfo) attrKeys() string {
	if len(info.Attrs) == 0 {
		return "none"
	}
	keys := make([]string, len(info.Attrs))
	for i, s := range info.Attrs {
		keys[i] = s.Key
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// checkAttrs checks a well-formed attribute list (Attrs.check) against the
// op's declarations. Errors name the key and its value; the caller adds the
// value and the op.
func (info OpInfo) checkAttrs(a Attrs) error {
	for _, at := range a {
		s, ok := info.Attr(at.Key)
		if !ok {
			return fmt.Errorf("unknown attribute %s=%s (%s takes %s)", at.Key, at.valueString(), info.Name, info.attrKeys())
		}
		if !s.Type.accepts(at.Kind) {
			return fmt.Errorf("attribute %s=%s is %v, want %v", at.Key, at.valueString(), at.Kind, s.Type)
		}
		if s.Type == TBool && at.I != 0 && at.I != 1 {
			return fmt.Errorf("%s must be 0 or 1, got %d", at.Key, at.I)
		}
	}
	for _, s := range info.Attrs {
		if s.Required && !a.Has(s.Key) {
			return fmt.Errorf("missing attribute %q", s.Key)
		}
	}
	return nil
}

// checkSchema checks the op table's own declarations: identifier keys,
// declared once, defaults of the declared type, SameAs naming a declared
// attribute of the same type. defineOp panics on a bad entry.
func (info OpInfo) checkSchema() error {
	seen := map[string]bool{}
	for _, s := range info.Attrs {
		switch {
		case !isIdent(s.Key) || seen[s.Key]:
			return fmt.Errorf("attribute %q: not an identifier, or declared twice", s.Key)
		case s.Type < TInt || s.Type > TInts:
			return fmt.Errorf("attribute %q: unknown type %d", s.Key, s.Type)
		case s.Required && (s.Default.Kind != 0 || s.SameAs != ""):
			return fmt.Errorf("attribute %q: required, with a default", s.Key)
		case !s.Required && s.SameAs != "":
			o, ok := info.Attr(s.SameAs)
			if !ok || o.Type != s.Type || s.Default.Kind != 0 {
				return fmt.Errorf("attribute %q: reads as %q, which is not a declared %v", s.Key, s.SameAs, s.Type)
			}
		case !s.Required && (s.Default.Key != s.Key || !s.Type.accepts(s.Default.Kind)):
			return fmt.Errorf("attribute %q: default %+v is not %v", s.Key, s.Default, s.Type)
		}
		seen[s.Key] = true
	}
	return nil
}

func (k AttrKind) String() string {
	switch k {
	case AttrInt:
		return TInt.String()
	case AttrFloat:
		return TFloat.String()
	case AttrString:
		return TString.String()
	case AttrInts:
		return TInts.String()
	}
	return fmt.Sprintf("attrkind(%d)", uint8(k))
}

// AttrReader reads the attributes of one value, step or recipe through its
// op's declarations: an absent optional attribute reads as its default. The
// verifier (Verify, Plan.Validate, Graph.NewValue) has checked the list
// against the same declarations, so a read can only fail by a programming
// error: a key the op does not declare, read as another type, or a
// required attribute missing from a list that was never verified. Those
// panic, naming the op and the key.
type AttrReader struct {
	op   Op
	list Attrs
}

// ReadAttrs reads list as the attributes of op.
func ReadAttrs(op Op, list Attrs) AttrReader { return AttrReader{op: op, list: list} }

// Attr reads the value's attributes.
func (v *Value) Attr() AttrReader { return AttrReader{op: v.Op, list: v.Attrs} }

// Attr reads the step's attributes.
func (s Step) Attr() AttrReader { return AttrReader{op: s.Op, list: s.Attrs} }

// Attr reads the recipe's attributes.
func (r *Recipe) Attr() AttrReader { return AttrReader{op: r.Op, list: r.Attrs} }

// get returns the attribute key as stored, or the value it reads as when
// absent, after checking that the op declares key with a type that t
// names.
func (r AttrReader) get(key string, t AttrType) Attr {
	info, _ := r.op.Info()
	s, ok := info.Attr(key)
	if !ok {
		panic(fmt.Sprintf("ir: op %v has no attribute %q", r.op, key))
	}
	if s.Type != t {
		panic(fmt.Sprintf("ir: attribute %q of %v is %v, read as %v", key, r.op, s.Type, t))
	}
	if at, ok := r.list.find(key); ok {
		if !t.accepts(at.Kind) {
			panic(fmt.Sprintf("ir: attribute %s=%s of %v is not %v (unverified attributes)", key, at.valueString(), r.op, t))
		}
		return at
	}
	switch {
	case s.Required:
		panic(fmt.Sprintf("ir: %v has no attribute %q, which it requires (unverified attributes)", r.op, key))
	case s.SameAs != "":
		return r.get(s.SameAs, t)
	}
	return s.Default
}

// Has reports whether attribute key is present (rather than read as its
// default); key must be one the op declares.
func (r AttrReader) Has(key string) bool {
	info, _ := r.op.Info()
	if _, ok := info.Attr(key); !ok {
		panic(fmt.Sprintf("ir: op %v has no attribute %q", r.op, key))
	}
	return r.list.Has(key)
}

// Int reads an integer attribute.
func (r AttrReader) Int(key string) int64 { return r.get(key, TInt).I }

// Bool reads a bool attribute.
func (r AttrReader) Bool(key string) bool { return r.get(key, TBool).I == 1 }

// Float reads a float attribute (one stored as an integer converts).
func (r AttrReader) Float(key string) float64 {
	at := r.get(key, TFloat)
	if at.Kind == AttrInt {
		return float64(at.I)
	}
	return at.F
}

// String reads a string attribute.
func (r AttrReader) String(key string) string { return r.get(key, TString).S }

// Ints reads an integer-list attribute; the caller must not modify it.
func (r AttrReader) Ints(key string) []int64 { return r.get(key, TInts).Is }
