// Package tokenizer implements Hugging Face tokenizer.json byte-level BPE as Qwen and GLM use it:
// the NFC normalizer, the Split pre-tokenizer (its regex read from tokenizer.json and run by
// regexp2, whose default backtracking mode supports `\s+(?!\S)` as HF's Oniguruma does), the
// ByteLevel pre-tokenizer and decoder, BPE by merge rank, and added tokens (special and not)
// matched before normalization or after it as their `normalized` flag says, with `lstrip`,
// `rstrip` and `single_word` honoured.
//
// Encode gives the ids HF tokenizers gives with add_special_tokens=False and
// split_special_tokens=False: added tokens written in the text are matched. Decode and
// StreamDecoder reproduce HF's ByteLevel decoding, including its replacement of invalid UTF-8
// (one U+FFFD per maximal invalid subpart, as Rust's String::from_utf8_lossy does); TokenBytes
// gives one token's raw bytes, the part of a character where Decode has U+FFFD.
//
// Besides Qwen3 (checked in the tests), the same code gave HF's ids on the tokenizers of
// DeepSeek-V3 (three chained Split regexes) and Llama 3 (ignore_merges) in a one-off check.
//
// It is not a general tokenizer.json implementation: WordPiece, Unigram, byte-fallback
// (SentencePiece-style) BPE, ByteLevel add_prefix_space, and normalizers other than NFC are
// rejected by Load with an error naming what is unsupported. The post_processor is not read:
// Encode never adds BOS/EOS; callers (or the chat template) add what the model expects.
package tokenizer
