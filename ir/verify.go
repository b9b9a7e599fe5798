package ir

import "fmt"

// Verify checks the whole graph: dense IDs, args defined before use and
// belonging to the graph, arity, required attributes, every type equal to
// what inference gives, unique input/weight/output names, valid cache specs
// and references. Errors wrap ErrVerify and name the value.
func Verify(g *Graph) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: graph %q: %s", ErrVerify, g.Name, fmt.Sprintf(format, args...))
	}
	for i, c := range g.Caches {
		if err := c.validate(); err != nil {
			return fail("cache %d: %v", i, err)
		}
	}
	names := map[string]*Value{}
	for i, v := range g.Values {
		if v == nil {
			return fail("value %d is nil", i)
		}
		if v.ID != i {
			return fail("value at index %d has ID %d", i, v.ID)
		}
		info, ok := v.Op.Info()
		if by, retired := v.Op.Retired(); retired {
			return fail("%v: op %v is retired (%v replaced it)", v, v.Op, by)
		} else if !ok {
			return fail("%v: unknown op %v", v, v.Op)
		}
		for _, a := range v.Args {
			if a == nil || a.ID < 0 || a.ID >= i || g.Values[a.ID] != a {
				return fail("%v %v: arg is not an earlier value of this graph", v, info.Name)
			}
		}
		if err := checkValue(v, info, false); err != nil {
			return fail("%v", err)
		}
		if v.Op == OpInput || v.Op == OpWeight {
			key := info.Name + " " + v.Name()
			if v.Name() == "" {
				return fail("%v %v: empty name", v, info.Name)
			}
			if prev, dup := names[key]; dup {
				return fail("%v: %s %q already declared by %v", v, info.Name, v.Name(), prev)
			}
			names[key] = v
		}
		if v.Op == OpAttention && v.Attr().Int("cache") >= int64(len(g.Caches)) {
			return fail("%v %v: cache %d not declared", v, info.Name, v.Attr().Int("cache"))
		}
	}
	if len(g.Outputs) == 0 {
		return fail("no outputs")
	}
	outs := map[string]bool{}
	for _, o := range g.Outputs {
		if o.Value == nil || o.Value.ID < 0 || o.Value.ID >= len(g.Values) || g.Values[o.Value.ID] != o.Value {
			return fail("output %q: not a value of this graph", o.Name)
		}
		if o.Name == "" || outs[o.Name] {
			return fail("output %q: empty or duplicate name", o.Name)
		}
		outs[o.Name] = true
	}
	return nil
}

func (c CacheSpec) validate() error {
	if c.Kind != CacheKV && c.Kind != CacheLatent && c.Kind != CacheState {
		return fmt.Errorf("unknown kind %v", c.Kind)
	}
	if !c.DType.IsFloat() {
		return fmt.Errorf("dtype %v is not float", c.DType)
	}
	if len(c.Entries) == 0 {
		return fmt.Errorf("no entries")
	}
	for _, e := range c.Entries {
		if err := e.validate(); err != nil || symOf(e) != 0 {
			return fmt.Errorf("bad entry shape %v", e)
		}
	}
	return nil
}
