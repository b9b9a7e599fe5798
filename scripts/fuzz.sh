#!/bin/sh
# fuzz.sh PKG TARGET TIME: runs one fuzz target for TIME. A finding (Go
# writes "Failing input written to testdata/fuzz/...") fails at once. A run
# that ends only in "context deadline exceeded" — the fuzzing engine timing
# out while it minimises a new input as TIME runs out on a loaded machine,
# not a property of the code — is retried once, and fails if it recurs.
set -u
pkg=$1 target=$2 time=$3
for try in 1 2; do
	out=$(go test "$pkg" -run '^$' -fuzz "$target" -fuzztime "$time" 2>&1)
	status=$?
	printf '%s\n' "$out" | tail -3
	[ $status -eq 0 ] && exit 0
	if printf '%s\n' "$out" | grep -q "Failing input written"; then
		printf '%s\n' "$out"
		exit 1
	fi
	if ! printf '%s\n' "$out" | grep -q "context deadline exceeded"; then
		printf '%s\n' "$out"
		exit 1
	fi
	echo "fuzz.sh: $pkg $target: the engine timed out while minimising (try $try)"
done
exit 1
