package ir

import "fmt"

// Retirement is a tombstone's record. An op is retired when another op
// computes the same thing (one op per meaning); its number stays taken,
// because engine files store it, and keeps its name, so that engines and
// text that use it still read: Upgrade rewrites it to the op that replaced
// it. Nothing builds, verifies or runs a retired op.
type Retirement struct {
	By     Op                // the op that computes the same thing
	Rename map[string]string // the retired op's attribute keys that By spells differently
}

// retire leaves a tombstone named name at op's number.
func retire(op Op, name string, r Retirement) {
	defineOp(op, OpInfo{Name: name, Comment: fmt.Sprintf("retired: read as %v", r.By), Retired: &r})
}

// Retired reports whether op is a tombstone, and the op that replaced it.
func (op Op) Retired() (Op, bool) {
	if op == OpInvalid || int(op) >= len(opTable) || opTable[op].Retired == nil {
		return OpInvalid, false
	}
	return opTable[op].Retired.By, true
}

// Upgrade rewrites a retired op and its attributes to the op that replaced
// it, renaming the attributes it spells differently; any other op comes
// back as it is. The result is not verified: the caller's verifier checks
// it as it checks any other value or step.
func Upgrade(op Op, attrs Attrs) (Op, Attrs, error) {
	if _, ok := op.Retired(); !ok {
		return op, attrs, nil
	}
	r := opTable[op].Retired
	list := make([]Attr, len(attrs))
	for i, at := range attrs {
		if k, ok := r.Rename[at.Key]; ok {
			at.Key = k
		}
		list[i] = at
	}
	a, err := MakeAttrs(list...)
	if err != nil {
		return op, attrs, fmt.Errorf("retired op %v read as %v: %w", op, r.By, err)
	}
	return r.By, a, nil
}

// Upgrade rewrites the plan's retired ops (Upgrade) in place, for a plan
// read from an engine built before they were retired; Validate then
// checks the plan as it checks any other.
func (p *Plan) Upgrade() error {
	for i := range p.Steps {
		s := &p.Steps[i]
		op, attrs, err := Upgrade(s.Op, s.Attrs)
		if err != nil {
			return fmt.Errorf("plan: step %d: %w", i, err)
		}
		s.Op, s.Attrs = op, attrs
	}
	return nil
}
