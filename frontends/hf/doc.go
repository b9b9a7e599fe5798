// Package hf reads Hugging Face checkpoints from local disk: config.json and
// generation_config.json (in both the transformers v4 and v5 spellings),
// safetensors files (memory-mapped, zero copy, every header field validated),
// sharded checkpoints with model.safetensors.index.json, auxiliary files such
// as tokenizer.json and chat templates, and the Hugging Face cache layout
// ($HF_HOME/hub/models--ORG--NAME/snapshots/REV).
//
// It is the only package that knows these file formats. It normalises what
// every architecture shares (sizes, RoPE parameters, special token ids) into
// Config and leaves the rest to the per-architecture builders in models/,
// which decode their own fields from Config.Raw and decide which fields they
// require.
//
// What it is not: it never downloads anything (a missing snapshot is an error
// that says what to run), it does not tokenize or render chat templates (see
// frontends/tokenizer), it does not map checkpoint tensor names to model
// weights, and it does not convert or quantize weights beyond the small
// Tensor.Float32 helper that tests and reference code use.
package hf
