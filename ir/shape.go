package ir

import (
	"fmt"
	"strconv"
	"strings"
)

// Dim is one dimension of a shape: a non-negative size, or a symbolic
// dimension (T or S) fixed only at run time.
type Dim int64

const (
	// T is the number of tokens in the step, over all sequences.
	T Dim = -1
	// S is the number of rows kept for outputs (S <= T), usually one per sequence.
	S Dim = -2
)

// Symbolic reports whether d is a run-time dimension.
func (d Dim) Symbolic() bool { return d == T || d == S }

// String prints a dimension: "T", "S" or the number.
func (d Dim) String() string {
	switch d {
	case T:
		return "T"
	case S:
		return "S"
	}
	return strconv.FormatInt(int64(d), 10)
}

// Shape is a list of dimensions, outermost first.
type Shape []Dim

// Sh builds a shape from ints and symbolic dims.
func Sh(dims ...Dim) Shape { return Shape(dims) }

// String prints a shape as "[T, 4, 32]".
func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Equal reports whether two shapes are identical.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy of s.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

// Last returns the innermost dimension (0 for a scalar).
func (s Shape) Last() Dim {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// Elems returns the number of elements with symbolic dims replaced by the
// given values. It reports false on overflow or a negative dimension.
func (s Shape) Elems(t, seqs int64) (int64, bool) {
	n := int64(1)
	for _, d := range s {
		v := int64(d)
		switch d {
		case T:
			v = t
		case S:
			v = seqs
		}
		if v < 0 {
			return 0, false
		}
		if v != 0 && n > (1<<62)/v {
			return 0, false
		}
		n *= v
	}
	return n, true
}

// Split returns the element count as perT·T + fixed, where the shape has at
// most one symbolic dimension (S counts as T for sizing, since S <= T). It
// reports false when the shape has two symbolic dimensions or overflows.
func (s Shape) Split() (perT, fixed int64, ok bool) {
	sym := false
	n := int64(1)
	for _, d := range s {
		if d.Symbolic() {
			if sym {
				return 0, 0, false
			}
			sym = true
			continue
		}
		if d < 0 || (d != 0 && n > (1<<62)/int64(d)) {
			return 0, 0, false
		}
		n *= int64(d)
	}
	if sym {
		return n, 0, true
	}
	return 0, n, true
}

func (s Shape) validate() error {
	sym := 0
	for _, d := range s {
		if d.Symbolic() {
			sym++
		} else if d < 0 {
			return fmt.Errorf("negative dimension %d in %v", d, s)
		}
	}
	if sym > 1 {
		return fmt.Errorf("shape %v has more than one symbolic dimension", s)
	}
	if _, _, ok := s.Split(); !ok {
		return fmt.Errorf("shape %v overflows", s)
	}
	return nil
}
