package ir

import "fmt"

// A Plan is what the runtime executes: the optimised graph lowered to an
// ordered list of steps over one arena. Everything in it is fixed at build
// time except T (tokens in the step), S (sequences in the step) and the
// paged-attention metadata (block tables, positions, sequence lengths),
// which arrive with each step. The runtime allocates the arena once for its
// largest T and never walks a graph or allocates per step.
type Plan struct {
	Inputs  []PlanTensor // runtime inputs, referred to by RefInput
	Weights []PlanTensor // weights by checkpoint name, referred to by RefWeight
	Buffers []Buffer     // arena buffers, referred to by RefBuffer
	Caches  []CacheSpec  // caches that attention-like steps name by index
	Steps   []Step
	Outputs []PlanOutput

	// The arena holds ArenaPerT·maxT + ArenaFixed bytes.
	ArenaPerT, ArenaFixed int64
}

// PlanTensor names a runtime input or a weight with its type.
type PlanTensor struct {
	Name  string
	DType DType
	Shape Shape
	// Recipe, for a weight, says how the compiler derives it from
	// checkpoint tensors (nil: the checkpoint tensor Name itself). It is a
	// build-time record only and is not stored in engines.
	Recipe *Recipe
}

// Recipe derives a weight at build time: Op (with Attrs) applied to the
// checkpoint tensors Parts, in order.
type Recipe struct {
	Op    Op
	Attrs Attrs
	Parts []PlanTensor
}

// Buffer is a region of the arena. Its byte offset is
// OffsetPerT·maxT + OffsetFixed, so one plan serves any maximum T. A buffer
// with View >= 0 is a reshaped view of buffer View and shares its bytes.
type Buffer struct {
	DType       DType
	Shape       Shape
	OffsetPerT  int64
	OffsetFixed int64
	View        int
}

// RefKind says where an operand lives.
type RefKind uint8

// Operand kinds.
const (
	RefBuffer RefKind = 1
	RefWeight RefKind = 2
	RefInput  RefKind = 3
)

// Ref is one operand of a step.
type Ref struct {
	Kind  RefKind
	Index int
}

func (r Ref) String() string {
	switch r.Kind {
	case RefBuffer:
		return fmt.Sprintf("b%d", r.Index)
	case RefWeight:
		return fmt.Sprintf("w%d", r.Index)
	case RefInput:
		return fmt.Sprintf("in%d", r.Index)
	}
	return fmt.Sprintf("ref(%d,%d)", r.Kind, r.Index)
}

// Step runs one op: reads Args, writes buffer Out.
type Step struct {
	Op    Op
	Args  []Ref
	Out   int
	Attrs Attrs
}

// PlanOutput names a buffer the runtime reads after a step.
type PlanOutput struct {
	Name   string
	Buffer int
}

// Bytes returns the byte size of a buffer's storage for a given max T
// (S is sized as T).
func (b Buffer) Bytes(maxT int64) int64 {
	n, _ := b.Shape.Elems(maxT, maxT)
	return n * int64(b.DType.Size())
}

// Root follows views to the buffer that owns the storage.
func (p *Plan) Root(i int) int {
	for n := 0; n < len(p.Buffers) && i >= 0 && i < len(p.Buffers) && p.Buffers[i].View >= 0; n++ {
		i = p.Buffers[i].View
	}
	return i
}

// operand returns the type of a reference, or an error when out of range.
func (p *Plan) operand(r Ref) (DType, Shape, error) {
	switch r.Kind {
	case RefBuffer:
		if r.Index >= 0 && r.Index < len(p.Buffers) {
			return p.Buffers[r.Index].DType, p.Buffers[r.Index].Shape, nil
		}
	case RefWeight:
		if r.Index >= 0 && r.Index < len(p.Weights) {
			return p.Weights[r.Index].DType, p.Weights[r.Index].Shape, nil
		}
	case RefInput:
		if r.Index >= 0 && r.Index < len(p.Inputs) {
			return p.Inputs[r.Index].DType, p.Inputs[r.Index].Shape, nil
		}
	}
	return 0, nil, fmt.Errorf("operand %v out of range", r)
}

// Validate checks a plan as read from an engine file, so that the runtime
// can trust it: every reference in range, every step's types equal to what
// its op infers, buffers written before they are read, views well formed,
// and every buffer inside the arena. It must never panic on any input.
func (p *Plan) Validate() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("plan: invalid: %v", r)
		}
	}()
	for i, t := range append(append([]PlanTensor(nil), p.Inputs...), p.Weights...) {
		if !t.DType.Valid() || t.Shape.validate() != nil || t.Name == "" {
			return fmt.Errorf("plan: tensor %d %q: bad type %v%v", i, t.Name, t.DType, t.Shape)
		}
	}
	for i, c := range p.Caches {
		if err := c.validate(); err != nil {
			return fmt.Errorf("plan: cache %d: %w", i, err)
		}
	}
	const align = 64
	for i, b := range p.Buffers {
		if !b.DType.Valid() || b.Shape.validate() != nil {
			return fmt.Errorf("plan: buffer %d: bad type %v%v", i, b.DType, b.Shape)
		}
		if b.View >= 0 {
			if b.View >= i {
				return fmt.Errorf("plan: buffer %d: view of later buffer %d", i, b.View)
			}
			r := p.Buffers[p.Root(b.View)]
			pt, ft, _ := b.Shape.Split()
			rp, rf, _ := r.Shape.Split()
			if b.DType != r.DType || pt != rp || ft != rf || symOf(b.Shape) != symOf(r.Shape) ||
				b.OffsetPerT != r.OffsetPerT || b.OffsetFixed != r.OffsetFixed {
				return fmt.Errorf("plan: buffer %d: view does not match buffer %d", i, b.View)
			}
			continue
		} else if b.View != -1 {
			return fmt.Errorf("plan: buffer %d: bad view %d", i, b.View)
		}
		pt, ft, _ := b.Shape.Split()
		sz := int64(b.DType.Size())
		if b.OffsetPerT%align != 0 || b.OffsetFixed%align != 0 ||
			!fits(b.OffsetPerT, pt, sz, p.ArenaPerT) || !fits(b.OffsetFixed, ft, sz, p.ArenaFixed) {
			return fmt.Errorf("plan: buffer %d: outside the arena or misaligned", i)
		}
	}
	written := make([]bool, len(p.Buffers))
	for si, s := range p.Steps {
		info, ok := s.Op.Info()
		if !ok || s.Op == OpInput || s.Op == OpWeight || s.Op == OpReshape {
			return fmt.Errorf("plan: step %d: op %v cannot be a step", si, s.Op)
		}
		args := make([]*Value, len(s.Args))
		for ai, r := range s.Args {
			dt, sh, err := p.operand(r)
			if err != nil {
				return fmt.Errorf("plan: step %d (%v): %w", si, s.Op, err)
			}
			if r.Kind == RefBuffer && !written[p.Root(r.Index)] {
				return fmt.Errorf("plan: step %d (%v): reads %v before it is written", si, s.Op, r)
			}
			args[ai] = &Value{ID: ai, DType: dt, Shape: sh}
		}
		if s.Out < 0 || s.Out >= len(p.Buffers) || p.Buffers[s.Out].View >= 0 {
			return fmt.Errorf("plan: step %d (%v): bad output buffer %d", si, s.Op, s.Out)
		}
		out := &Value{ID: len(args), Op: s.Op, Args: args, Attrs: s.Attrs, DType: p.Buffers[s.Out].DType, Shape: p.Buffers[s.Out].Shape}
		if err := checkValue(out, info, false); err != nil {
			return fmt.Errorf("plan: step %d: %w", si, err)
		}
		if s.Op == OpAttention && s.Attr().Int("cache") >= int64(len(p.Caches)) {
			return fmt.Errorf("plan: step %d (%v): cache %d not declared", si, s.Op, s.Attr().Int("cache"))
		}
		written[s.Out] = true
	}
	outs := map[string]bool{}
	for _, o := range p.Outputs {
		if o.Buffer < 0 || o.Buffer >= len(p.Buffers) || !written[p.Root(o.Buffer)] {
			return fmt.Errorf("plan: output %q: bad or unwritten buffer %d", o.Name, o.Buffer)
		}
		if o.Name == "" || outs[o.Name] {
			return fmt.Errorf("plan: output %q: empty or duplicate name", o.Name)
		}
		outs[o.Name] = true
	}
	return nil
}

// fits reports whether n elements of sz bytes at byte offset off end within
// limit, without overflowing int64 (engine files are untrusted).
func fits(off, n, sz, limit int64) bool {
	if off < 0 || n < 0 || sz <= 0 || off > limit {
		return false
	}
	return n <= (limit-off)/sz
}
