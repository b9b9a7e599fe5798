package runtime

// The sizing defaults of the backends (runtime/cpu, runtime/cuda), the
// scheduler and pio, set here only: a zero option field takes these, so a
// backend built directly and one that pio builds agree, and piort's flags
// show the same numbers.
const (
	// DefaultMaxStepTokens is the most tokens in one step (the backends'
	// MaxTokens, the scheduler's MaxStepTokens).
	DefaultMaxStepTokens = 256
	// DefaultMaxSeqs is the most sequences in one step, and the number of
	// per-sequence state slots.
	DefaultMaxSeqs = 16
	// DefaultCacheTokens is the KV cache positions the default number of
	// blocks holds.
	DefaultCacheTokens = 8192
	// DefaultBlockSize is the positions per KV cache block.
	DefaultBlockSize = 16
	// DefaultMaxQueue is the most requests waiting for a slot before Submit
	// refuses more.
	DefaultMaxQueue = 256
)
