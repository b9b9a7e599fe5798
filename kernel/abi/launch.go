package abi

import "fmt"

// ParamKind says what the runtime passes for one kernel parameter.
type ParamKind uint8

// Parameter kinds. Numbers are stored in engine files: append only.
const (
	PInvalid     ParamKind = 0
	PArg         ParamKind = 1  // device pointer of the step's argument Index (buffer, weight or input)
	POut         ParamKind = 2  // device pointer of the step's output buffer
	PT           ParamKind = 3  // int32: tokens in the step
	PS           ParamKind = 4  // int32: logit rows in the step
	PCacheK      ParamKind = 5  // device pointer of cache Index's first entry pool (K)
	PCacheV      ParamKind = 6  // device pointer of cache Index's second entry pool (V)
	PPositions   ParamKind = 7  // device pointer: i32[T] positions
	PSeqOfToken  ParamKind = 8  // device pointer: i32[T] sequence of each token
	PBlockTables ParamKind = 9  // device pointer: i32[maxSeqs, MaxBlocks] block tables
	PMaxBlocks   ParamKind = 10 // int32: row stride of the block tables
	PBlockSize   ParamKind = 11 // int32: positions per cache block
	PTiles       ParamKind = 12 // device pointer: i32[tiles, 3] prefill tiles (seq, first token, tokens)
	PWorkspace   ParamKind = 13 // device pointer: f32 scratch of at least Launch.Workspace floats per S
	PSplits      ParamKind = 14 // int32: decode splits per sequence (Launch grid z)
	PSlots       ParamKind = 15 // device pointer: i32[maxSeqs] state-cache slot of each sequence (runtime.SeqView.Slot)
	PSeqWork     ParamKind = 16 // device pointer: f32 scratch of Launch.Workspace floats per sequence of the step (maxSeqs regions)
)

var paramNames = map[ParamKind]string{
	PArg: "arg", POut: "out", PT: "T", PS: "S", PCacheK: "cache_k", PCacheV: "cache_v",
	PPositions: "positions", PSeqOfToken: "seq_of_token", PBlockTables: "block_tables",
	PMaxBlocks: "max_blocks", PBlockSize: "block_size", PTiles: "tiles", PWorkspace: "workspace",
	PSplits: "splits", PSlots: "slots", PSeqWork: "seq_work",
}

// Known reports whether k is one of the kinds above (an engine from a
// newer writer may carry others).
func (k ParamKind) Known() bool {
	_, ok := paramNames[k]
	return ok
}

// Param is one kernel parameter.
type Param struct {
	Kind  ParamKind
	Index uint16 // PArg: argument index; PCacheK/PCacheV: cache index
}

func (p Param) String() string {
	n, ok := paramNames[p.Kind]
	if !ok {
		return fmt.Sprintf("param(%d)", p.Kind)
	}
	if p.Kind == PArg {
		return fmt.Sprintf("arg%d", p.Index)
	}
	return n
}

// IsPointer reports whether the parameter is a 64-bit device pointer (else
// it is an int32).
func (p Param) IsPointer() bool {
	switch p.Kind {
	case PT, PS, PMaxBlocks, PBlockSize, PSplits:
		return false
	}
	return true
}

// Expr is a grid dimension computed at run time:
// ⌈(T·T + S·S + Tiles·tiles + Splits·splits + Fixed) / Div⌉ (Div 0 means 1).
type Expr struct {
	T, S, Tiles, Splits, Fixed, Div int64
}

// Eval computes the expression for one step.
func (e Expr) Eval(t, s, tiles, splits int64) int64 {
	n := e.T*t + e.S*s + e.Tiles*tiles + e.Splits*splits + e.Fixed
	d := max(e.Div, 1)
	return (n + d - 1) / d
}

func (e Expr) String() string {
	return fmt.Sprintf("(%d·T+%d·S+%d·tiles+%d·splits+%d)/%d", e.T, e.S, e.Tiles, e.Splits, e.Fixed, max(e.Div, 1))
}

// Mode restricts a launch to decode steps (every sequence brings one token),
// prefill steps (any other), or neither.
type Mode uint8

// Launch modes. Numbers are stored in engine files: append only.
const (
	Always  Mode = 0
	Decode  Mode = 1
	Prefill Mode = 2
)

// Launch is one kernel launch of a step.
type Launch struct {
	Step      int     // plan step
	Kernel    string  // extern "C" symbol in the module
	Params    []Param // in the kernel's parameter order
	Grid      [3]Expr
	Block     int   // threads per block (1-D)
	Mode      Mode  // when the launch runs
	Rows      Expr  // the rows MinRows and MaxRows bound (zero Expr: T)
	MinRows   int   // run only when Rows >= MinRows
	MaxRows   int   // and Rows <= MaxRows (0: no bound)
	Workspace int64 // f32 scratch floats per token per split (PWorkspace); with MaxRows > 0, per row of the step
}

// Runs reports whether the launch runs in a step of t tokens and s logit
// rows that is (decode) or is not a decode step.
func (l *Launch) Runs(t, s int, decode bool) bool {
	if l.Mode == Decode && !decode || l.Mode == Prefill && decode {
		return false
	}
	rows := int64(t)
	if l.Rows != (Expr{}) {
		rows = l.Rows.Eval(int64(t), int64(s), 0, 0)
	}
	return rows >= int64(l.MinRows) && (l.MaxRows <= 0 || rows <= int64(l.MaxRows))
}
