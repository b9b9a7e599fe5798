package runtime

// Batch is one step's work: the tokens of all sequences, concatenated.
//
// A backend binds the plan's runtime inputs by name: "tokens" ← Tokens,
// "positions" ← Positions and "logit_rows" ← LogitRows (all i32); any
// other input of the plan (Qwen3-VL's mrope_positions, image_mask,
// image_embeds, deepstack.<k>) ← Inputs[name]. Paged
// attention reads Positions, SeqOfToken and Seqs directly. Within a step a
// sequence's tokens are contiguous and at consecutive positions; the cache
// already holds every earlier position of the sequence.
//
// The plan's symbolic S is the number of logit rows: S-shaped outputs hold
// one row per LogitRows entry. That is usually one per sequence (its last
// token), but a caller may keep any rows of the step, up to all T of them
// for a full-sequence forward.
type Batch struct {
	Tokens     []int32   // [T] token ids
	Positions  []int32   // [T] position of each token in its sequence
	SeqOfToken []int32   // [T] index into Seqs; a sequence's tokens are contiguous and in position order
	Seqs       []SeqView // [S]
	LogitRows  []int32   // [S] rows of the step kept for S-shaped outputs (usually each sequence's last token)
	// Inputs are the plan's other [T, ...] inputs by name, for exactly
	// the step's T tokens in the order of Tokens (row-major, a whole
	// number of rows each). A plan that has such inputs needs every one
	// of them in every step; plans without them ignore Inputs.
	Inputs map[string]Input
}

// Input is the value of one named step input: F32 for an f32 input, I32
// for an i32 one (the other nil).
type Input struct {
	F32 []float32
	I32 []int32
}

// Append appends values to in (f32 to F32, i32 to I32), for callers
// assembling a step's rows sequence by sequence.
func (in *Input) Append(f32 []float32, i32 []int32) {
	in.F32 = append(in.F32, f32...)
	in.I32 = append(in.I32, i32...)
}

// SeqView is what a backend needs of a sequence: its block table in the
// paged caches (position p lives in block Blocks[p/blockSize] at offset
// p%blockSize) and its slot in the per-sequence state caches.
type SeqView struct {
	Blocks []int32
	Slot   int32
}

// Backend executes one compiled plan. It is not safe for concurrent use.
type Backend interface {
	// Step runs the plan once over b. A malformed batch is an error, never a
	// panic, and leaves the caches untouched.
	Step(b *Batch) error
	// Output returns an output of the last successful Step with its symbolic
	// dimensions resolved. The data belongs to the backend and is valid until
	// the next Step.
	Output(name string) (data []float32, shape []int, err error)
	// Close releases the backend's memory and workers.
	Close() error
}

// Argmaxer is implemented by a backend that can pick the greedy token of
// each row of the "logits" output where the logits live: on a GPU only S
// int32s then cross the bus instead of S·vocab floats (39 MB a step at
// batch 64 with Qwen3's vocabulary). Argmax returns, for each row of the
// last successful Step, the first index of the maximum, or -1 where the
// row holds no finite maximum (NaN or infinite logits).
type Argmaxer interface {
	Argmax() ([]int32, error)
}

// Candidater is implemented by a backend that can list, where the logits
// live, the tokens of each row of the "logits" output that sampling may
// draw (runtime/sample: those within 30 nats of the best at the request's
// temperature), so only those cross the bus instead of S·vocab floats.
//
// Candidates returns one entry per row of the last successful Step: every
// token whose logit v has v - m >= -offsets[r] in f32 arithmetic, m being
// the row's maximum, in increasing id order, and the row length (vocab).
// A row with more than limit such tokens, a NaN, or no finite maximum
// comes back Full: its caller samples it from Output("logits").
type Candidater interface {
	Candidates(offsets []float32, limit int) (rows []Candidates, vocab int, err error)
}

// Candidates is one logits row's candidate tokens (Candidater). IDs and
// Vals belong to the backend and are valid until its next Step or
// Candidates call.
type Candidates struct {
	IDs  []int32   // increasing token ids
	Vals []float32 // their logits
	Max  float32   // the row's maximum logit (NaN when the row holds one)
	Full bool      // no list: more than limit tokens, a NaN, or no finite maximum
}
