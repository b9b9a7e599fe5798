// Package layers states which packages of the module may depend on which,
// as data (Rules, Exceptions), and its test checks the tree against them:
// every package's non-test imports, followed through the module, on each
// platform the repository builds for. docs/design.md ("Layers") gives the
// picture; this table is what is enforced.
//
// What it is not: a view of tests. A test may reach across layers (the
// CUDA backend's tests build engines through the compiler); only what a
// package's own code imports counts. Nothing imports this package.
package layers

// A Rule forbids the packages matching From (less those matching Unless)
// to depend, directly or through other packages of the module, on any
// package matching Forbid but not Allow. Patterns are import paths relative
// to the module; "x/..." matches x and every package below it, "..." every
// package.
type Rule struct {
	From   string
	Unless []string
	Forbid []string
	Allow  []string
	Why    string
}

// An Exception is a dependency that a Rule forbids and the tree still
// has: From may depend on the package To (itself; what To imports is still
// checked). Each one is a debt: the test fails once the tree no longer
// needs it, so that it is removed here and in docs/design.md.
type Exception struct {
	From, To string
	Why      string
}

// Rules, from the bottom of the module up.
var Rules = []Rule{
	{
		From: "ir/...", Forbid: []string{"..."}, Allow: []string{"ir/..."},
		Why: "the IR is the bottom: everything else is written in its terms",
	},
	{
		From: "kernel/...", Forbid: []string{"..."}, Allow: []string{"kernel/..."},
		Why: "the launch ABI is what the code generator, the engine file and the CUDA runtime agree on: it sits below all three",
	},
	{
		From: "grammar/...", Forbid: []string{"..."}, Allow: []string{"grammar/..."},
		Why: "the grammar engine matches bytes and masks a vocabulary given as byte strings: the tokenizer, sampler and server use it, it uses none of them",
	},
	{
		From:   "frontends/...",
		Forbid: []string{"passes/...", "models/...", "codegen/...", "compiler/...", "runtime/...", "pio/...", "server/..."},
		Why:    "frontends read outside formats (config.json, safetensors, tokenizers, chat templates, images) into data; they build and run nothing",
	},
	{
		From:   "passes/...",
		Forbid: []string{"frontends/...", "models/...", "codegen/...", "compiler/...", "runtime/...", "pio/...", "server/..."},
		Why:    "a pass is a func(*ir.Graph) error: it sees only IR",
	},
	{
		From:   "models/...",
		Forbid: []string{"passes/...", "codegen/...", "compiler/...", "runtime/...", "pio/...", "server/..."},
		Why:    "a model builds IR from its config; it never names a pass, a kernel or a backend",
	},
	{
		From:   "codegen/...",
		Forbid: []string{"passes/...", "models/...", "compiler/...", "pio/...", "server/..."},
		Why:    "kernels are chosen by a plan step's op and attributes, never by model",
	},
	{
		From:   "compiler/...",
		Forbid: []string{"runtime/...", "pio/...", "server/..."},
		Allow:  []string{"runtime/engine"},
		Why:    "the compiler writes engine files (runtime/engine); it runs nothing",
	},
	{
		From:   "runtime/...",
		Forbid: []string{"frontends/...", "passes/...", "models/...", "codegen/...", "compiler/...", "pio/...", "server/..."},
		Why:    "the runtime executes plans read from engine files: it does not build them, and it knows nothing of text or HTTP",
	},
	{
		From:   "pio/...",
		Forbid: []string{"passes/...", "codegen/...", "compiler/...", "server/..."},
		Why:    "the library runs engines that pioc built, and the server is written over it",
	},
	{
		From:   "server/...",
		Forbid: []string{"passes/...", "codegen/...", "compiler/..."},
		Why:    "the server speaks HTTP over pio",
	},
	{
		From: "...", Unless: []string{"cmd/..."}, Forbid: []string{"cmd/..."},
		Why: "the commands are the top: nothing imports them",
	},
	{
		From: "...", Unless: []string{"internal/..."}, Forbid: []string{"internal/..."},
		Why: "internal/ holds test helpers (they build engines and import testing): tests use them, code does not",
	},
}

// Exceptions still in the tree, each to be removed by the work named. None
// is left.
var Exceptions []Exception
