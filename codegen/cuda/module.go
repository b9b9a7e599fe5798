package cuda

import "github.com/inference-pio/pio/kernel/abi"

// Module is the generated code of one plan.
type Module struct {
	Source   string       // the .cu file
	Kernels  []string     // extern "C" symbols, sorted
	Launches []abi.Launch // in step order; a step may have several
	// TileTokens is the most tokens per prefill tile (PTiles): the runtime
	// cuts each sequence's tokens of a step into tiles of at most this many.
	TileTokens int
	// SplitSize is the number of cached positions one decode split covers;
	// the runtime launches ⌈maxContext/SplitSize⌉ splits.
	SplitSize int
	// Argmax is the greedy-sampling kernel over the rows of the "logits"
	// output (argmax(x *float, out *int32, rows int32), one block per row,
	// 256 threads), and ArgmaxVocab its row length; "" when the plan has no
	// [S, V] logits.
	Argmax      string
	ArgmaxVocab int
	// Candidates is the sampling-candidates kernel over the same rows
	// (sample.go; one block of 256 threads per row); "" when Argmax is.
	Candidates string

	bodies []string // each kernel's text, in emission order
}
