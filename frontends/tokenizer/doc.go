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
// (one U+FFFD per maximal invalid subpart, as Rust's String::from_utf8_lossy does).
//
// It is not a general tokenizer.json implementation: WordPiece, Unigram, byte-fallback
// (SentencePiece-style) BPE, post-processors that add tokens, and normalizers other than NFC are
// rejected by Load with an error naming what is unsupported.
package tokenizer
