#!/bin/sh
# Regenerates the FlatBuffers Go bindings of engine.fbs into schemas/pio.
# The committed bindings come from Debian's flatc 2.0.8; other versions
# generate different code, so this refuses them (FLATC=/path/to/flatc picks
# the binary). Run from anywhere: sh schemas/generate.sh
set -eu
cd "$(dirname "$0")/.."
flatc=${FLATC:-flatc}
want="flatc version 2.0.8"
got=$("$flatc" --version 2>/dev/null || true)
if [ "$got" != "$want" ]; then
	echo "schemas/generate.sh: need $want (Debian flatbuffers-compiler), found: ${got:-no flatc}" >&2
	exit 1
fi
rm -rf schemas/pio
"$flatc" --go -o schemas schemas/engine.fbs
