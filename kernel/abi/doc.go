// Package abi is the CUDA launch ABI: what a kernel launch of a plan step
// is (Launch: the kernel, its parameters by kind, the grid as expressions
// in T, S, tiles and splits, when it runs) and the compiled images a
// module ships as (Image, SelectImage). codegen/cuda produces launches,
// runtime/engine stores them in the engine's kernels section, runtime/cuda
// resolves their parameters and runs them; all three use these types, so
// a launch has one form everywhere.
//
// What it is not: the code generator (which kernel a step gets, how its
// grid is cut: codegen/cuda), the file format (how a launch is encoded:
// runtime/engine) or the executor (runtime/cuda). It imports nothing of
// the module, so that the runtime takes the ABI without the generator and
// its nvcc driver.
//
// ParamKind and Mode numbers are stored in engine files: append only.
package abi
