package grammar

import (
	"fmt"
	"slices"
	"strings"
	"sync"
)

// A Grammar is compiled and immutable: any number of Matchers may follow
// it concurrently.
type Grammar struct {
	names []string  // rule id -> name (generated rules are named after their parent)
	alts  [][]int32 // rule id -> index in elems of each alternative's first element
	elems []elem
	root  int32
	masks sync.Map // *Vocab -> *maskCache, filled by Mask
}

type elemKind uint8

const (
	eEnd   elemKind = iota // the end of an alternative
	eBytes                 // one byte of set
	eRule                  // rule
)

type elem struct {
	kind elemKind
	// tail marks a later state of a character class's byte automaton: it
	// lies outside every alternative, and the continuation below it on the
	// stack is what follows the whole class.
	tail  bool
	rule  int32
	set   byteSet
	trans *[256]int32 // a class state: byte -> the next state's element, or -1 when the class ends
}

// byteSet is a set of bytes, one bit each.
type byteSet [4]uint64

func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s[c>>6] |= 1 << (c & 63)
	}
}

func (s *byteSet) has(c byte) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// maxElems bounds a compiled grammar's size.
const maxElems = 1 << 22

// item is an element of a rule being built: a byte set, or a rule (rule >= 0).
type item struct {
	set  byteSet
	rule int32
	dfa  *classDFA
}

func setItem(s byteSet) item { return item{set: s, rule: -1} }

type builder struct {
	names   []string
	bodies  [][][]item // rule id -> alternatives
	byName  map[string]int32
	classes map[string]*classDFA // lowered non-ASCII classes, shared
	size    int
	p       *parser
}

func (b *builder) newRule(name string) int32 {
	id := int32(len(b.names))
	b.names = append(b.names, name)
	b.bodies = append(b.bodies, nil)
	return id
}

// Parse compiles a grammar in GBNF (see the package documentation); its
// start rule is root.
func Parse(src string) (*Grammar, error) {
	defs, err := parseGBNF(src)
	if err != nil {
		return nil, err
	}
	b := &builder{byName: map[string]int32{}, classes: map[string]*classDFA{}, p: &parser{src: src}}
	for _, d := range defs {
		if _, dup := b.byName[d.name]; dup {
			return nil, b.p.errAt(d.pos, "rule %q defined twice", d.name)
		}
		b.byName[d.name] = b.newRule(d.name)
	}
	root, ok := b.byName["root"]
	if !ok {
		return nil, b.p.errAt(0, "no rule named root")
	}
	for _, d := range defs {
		id := b.byName[d.name]
		alts, err := b.lowerAlts(d.name, d.alts)
		if err != nil {
			return nil, err
		}
		b.bodies[id] = alts
	}
	return b.finish(root)
}

func (b *builder) grow(n int) error {
	if b.size += n; b.size > maxElems {
		return fmt.Errorf("grammar: compiled grammar larger than %d elements", maxElems)
	}
	return nil
}

func (b *builder) lowerAlts(name string, alts [][]*node) ([][]item, error) {
	out := make([][]item, 0, len(alts))
	for _, seq := range alts {
		var items []item
		for _, n := range seq {
			var err error
			if items, err = b.lower(name, items, n); err != nil {
				return nil, err
			}
		}
		if err := b.grow(len(items) + 1); err != nil {
			return nil, err
		}
		out = append(out, items)
	}
	return out, nil
}

func (b *builder) lower(name string, dst []item, n *node) ([]item, error) {
	switch n.kind {
	case nLit:
		for _, c := range n.lit {
			var s byteSet
			s.addRange(c, c)
			dst = append(dst, setItem(s))
		}
		return dst, nil
	case nClass:
		return append(dst, b.class(name, n.ranges, n.negated)...), nil
	case nRef:
		id, ok := b.byName[n.name]
		if !ok {
			return nil, b.p.errAt(n.pos, "undefined rule %q", n.name)
		}
		return append(dst, item{rule: id}), nil
	case nGroup:
		alts, err := b.lowerAlts(name, n.alts)
		if err != nil {
			return nil, err
		}
		if len(alts) == 1 {
			return append(dst, alts[0]...), nil
		}
		id := b.newRule(fmt.Sprintf("%s-%d", name, len(b.names)))
		b.bodies[id] = alts
		return append(dst, item{rule: id}), nil
	case nRepeat:
		x, err := b.lower(name, nil, n.alts[0][0])
		if err != nil {
			return nil, err
		}
		if len(x) > 1 && (n.min > 1 || n.max > 1 || n.max < 0) {
			id := b.newRule(fmt.Sprintf("%s-%d", name, len(b.names)))
			b.bodies[id] = [][]item{x}
			x = []item{{rule: id}}
		}
		if err := b.grow(n.min*len(x) + 2*max(n.max-n.min, 1)*(len(x)+2)); err != nil {
			return nil, err
		}
		for range n.min {
			dst = append(dst, x...)
		}
		if n.max < 0 { // star ::= x star | ε
			id := b.newRule(fmt.Sprintf("%s-%d", name, len(b.names)))
			b.bodies[id] = [][]item{append(slices.Clip(x), item{rule: id}), nil}
			return append(dst, item{rule: id}), nil
		}
		// x{0,k} as nested options: opt_k ::= x opt_{k-1} | ε.
		var inner []item
		for range n.max - n.min {
			id := b.newRule(fmt.Sprintf("%s-%d", name, len(b.names)))
			b.bodies[id] = [][]item{append(slices.Clip(x), inner...), nil}
			inner = []item{{rule: id}}
		}
		return append(dst, inner...), nil
	}
	panic("unreachable")
}

// class lowers a character class to one item: a byte set when it is
// ASCII, else the start state of a byte automaton of its UTF-8 sequences.
func (b *builder) class(name string, ranges []runeRange, negated bool) []item {
	rs := normalizeRanges(ranges)
	if negated {
		rs = complementRanges(rs)
	}
	if len(rs) > 0 && rs[len(rs)-1].hi < 0x80 {
		var s byteSet
		for _, r := range rs {
			s.addRange(byte(r.lo), byte(r.hi))
		}
		return []item{setItem(s)}
	}
	if len(rs) == 0 { // matches nothing: a rule without alternatives
		return []item{{rule: b.newRule(fmt.Sprintf("%s-class-%d", name, len(b.names)))}}
	}
	var key strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&key, "%x-%x,", r.lo, r.hi)
	}
	d, ok := b.classes[key.String()]
	if !ok {
		var seqs [][]byteRange
		for _, r := range rs {
			seqs = append(seqs, utf8Sequences(r.lo, r.hi)...)
		}
		d = newClassDFA(seqs)
		b.classes[key.String()] = d
		b.size += len(d.states)
	}
	return []item{{set: d.states[0].set, rule: -1, dfa: d}}
}

// A classDFA is a character class as a byte automaton: one element (its
// start state) where the class is used, so a character is one stack
// element with a byte-set test rather than an alternative per UTF-8
// sequence; its later states (continuation bytes) are elements shared by
// every use.
type classDFA struct {
	states []dfaState // states[0] is the start
	base   int32      // the element of states[1]
	start  *[256]int32
}

type dfaState struct {
	set  byteSet
	next [256]int32 // byte -> state, or -1: the class ends
}

// newClassDFA builds the automaton of the byte-range sequences seqs (the
// UTF-8 encodings of disjoint code points, so no sequence is a prefix of
// another); states with the same remaining sequences are one state.
func newClassDFA(seqs [][]byteRange) *classDFA {
	d := &classDFA{}
	memo := map[string]int32{}
	var build func(seqs [][]byteRange) int32
	build = func(seqs [][]byteRange) int32 {
		var key strings.Builder
		for _, seq := range seqs {
			for _, r := range seq {
				fmt.Fprintf(&key, "%x-%x.", r.lo, r.hi)
			}
			key.WriteByte(',')
		}
		if id, ok := memo[key.String()]; ok {
			return id
		}
		id := int32(len(d.states))
		memo[key.String()] = id
		d.states = append(d.states, dfaState{})
		var st dfaState
		for c := 0; c < 256; c++ {
			st.next[c] = -1
			var rest [][]byteRange
			hit := false
			for _, seq := range seqs {
				if byte(c) < seq[0].lo || byte(c) > seq[0].hi {
					continue
				}
				hit = true
				if len(seq) > 1 {
					rest = append(rest, seq[1:])
				}
			}
			if !hit {
				continue
			}
			st.set.addRange(byte(c), byte(c))
			if len(rest) > 0 {
				st.next[c] = build(rest)
			}
		}
		d.states[id] = st
		return id
	}
	build(seqs)
	return d
}

func normalizeRanges(in []runeRange) []runeRange {
	rs := slices.Clone(in)
	slices.SortFunc(rs, func(a, b runeRange) int { return int(a.lo - b.lo) })
	var out []runeRange
	for _, r := range rs {
		if n := len(out); n > 0 && r.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func complementRanges(rs []runeRange) []runeRange {
	var out []runeRange
	next := rune(0)
	for _, r := range rs {
		if r.lo > next {
			out = append(out, runeRange{next, r.lo - 1})
		}
		next = r.hi + 1
	}
	if next <= 0x10FFFF {
		out = append(out, runeRange{next, 0x10FFFF})
	}
	return out
}

// finish flattens the rules into elements and rejects left recursion.
func (b *builder) finish(root int32) (*Grammar, error) {
	g := &Grammar{names: b.names, alts: make([][]int32, len(b.bodies)), root: root}
	var dfas []*classDFA
	for id, alts := range b.bodies {
		for _, alt := range alts {
			g.alts[id] = append(g.alts[id], int32(len(g.elems)))
			for _, it := range alt {
				switch {
				case it.rule >= 0:
					g.elems = append(g.elems, elem{kind: eRule, rule: it.rule})
				case it.dfa != nil:
					if it.dfa.start == nil {
						it.dfa.start = new([256]int32)
						dfas = append(dfas, it.dfa)
					}
					g.elems = append(g.elems, elem{kind: eBytes, set: it.set, trans: it.dfa.start})
				default:
					g.elems = append(g.elems, elem{kind: eBytes, set: it.set})
				}
			}
			g.elems = append(g.elems, elem{kind: eEnd})
		}
	}
	// The classes' later states follow every alternative.
	for _, d := range dfas {
		d.base = int32(len(g.elems))
		for range d.states[1:] {
			g.elems = append(g.elems, elem{kind: eBytes, tail: true, trans: new([256]int32)})
		}
	}
	for _, d := range dfas {
		for i, st := range d.states {
			t := d.start
			if i > 0 {
				e := &g.elems[d.base+int32(i)-1]
				e.set, t = st.set, e.trans
			}
			for c, n := range st.next {
				t[c] = -1
				if n > 0 {
					t[c] = d.base + n - 1
				}
			}
		}
	}
	if err := g.checkLeftRecursion(); err != nil {
		return nil, err
	}
	return g, nil
}

// nullable reports, per rule, whether it matches the empty string.
func (g *Grammar) nullable() []bool {
	null := make([]bool, len(g.alts))
	for changed := true; changed; {
		changed = false
		for id, alts := range g.alts {
			if null[id] {
				continue
			}
			for _, a := range alts {
				i := a
				for g.elems[i].kind == eRule && null[g.elems[i].rule] {
					i++
				}
				if g.elems[i].kind == eEnd {
					null[id], changed = true, true
					break
				}
			}
		}
	}
	return null
}

func (g *Grammar) checkLeftRecursion() error {
	null := g.nullable()
	// left[r]: the rules r can start with, without consuming a byte.
	left := make([][]int32, len(g.alts))
	for id, alts := range g.alts {
		for _, a := range alts {
			for i := a; g.elems[i].kind == eRule; i++ {
				left[id] = append(left[id], g.elems[i].rule)
				if !null[g.elems[i].rule] {
					break
				}
			}
		}
	}
	const (
		unseen = iota
		active
		done
	)
	state := make([]uint8, len(g.alts))
	var path []int32
	var visit func(r int32) error
	visit = func(r int32) error {
		state[r] = active
		path = append(path, r)
		for _, s := range left[r] {
			switch state[s] {
			case active:
				i := slices.Index(path, s)
				var names []string
				for _, p := range path[i:] {
					names = append(names, g.names[p])
				}
				names = append(names, g.names[s])
				return fmt.Errorf("grammar: left recursion: %s (a rule reaches itself without consuming input)", strings.Join(names, " -> "))
			case unseen:
				if err := visit(s); err != nil {
					return err
				}
			}
		}
		path = path[:len(path)-1]
		state[r] = done
		return nil
	}
	for r := range g.alts {
		if state[r] == unseen {
			if err := visit(int32(r)); err != nil {
				return err
			}
		}
	}
	return nil
}
