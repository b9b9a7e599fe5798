#!/bin/sh
# fuzz.sh PKG TARGET TIME [MIN_EXECS]: runs one fuzz target for TIME and
# prints how many inputs it executed. A finding (Go writes "Failing input
# written to testdata/fuzz/...") fails at once. So does a run that executed
# fewer than MIN_EXECS inputs (default $FUZZ_MIN_EXECS, else 1000): a fuzzer
# that stalls — spending its budget minimising one large new input, say —
# is seen instead of passing. Minimisation is bounded by
# $FUZZ_MINIMIZE_TIME (default 100x: a hundred runs per new input; go
# test's own default is 60s, longer than the whole run, and even 2s let
# FuzzParse of runtime/engine, on a fresh cache, spend 10s minimising nine
# new inputs and run 99 of them). A run that ends only in "context deadline exceeded"
# — the fuzzing engine timing out while it minimises a new input as TIME
# runs out on a loaded machine, not a property of the code — is retried
# once, and fails if it recurs.
set -u
pkg=$1 target=$2 time=$3 floor=${4:-${FUZZ_MIN_EXECS:-1000}}
for try in 1 2; do
	out=$(go test "$pkg" -run '^$' -fuzz "$target" -fuzztime "$time" \
		-fuzzminimizetime "${FUZZ_MINIMIZE_TIME:-100x}" 2>&1)
	status=$?
	# The engine's progress lines end with the totals: "fuzz: elapsed: 10s,
	# execs: 12345 (1234/sec), new interesting: 3 (total: 20)".
	execs=$(printf '%s\n' "$out" | sed -n 's/.*execs: \([0-9]*\).*/\1/p' | tail -1)
	if [ $status -eq 0 ]; then
		echo "fuzz.sh: $pkg $target: ${execs:-0} inputs in $time (floor $floor)"
		if [ "${execs:-0}" -lt "$floor" ]; then
			printf '%s\n' "$out"
			echo "fuzz.sh: $pkg $target executed ${execs:-0} inputs, under the floor of $floor: the fuzzer stalled"
			exit 1
		fi
		exit 0
	fi
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
