#!/bin/sh
# tolerances.sh [PKG...]: runs the numeric test packages once per CPU kernel
# level this machine has (scripts/cpu-levels.sh), and for arm64 under qemu
# when it can, with PIO_TOL_LOG set, then
# prints each tolerance check (internal/tolerance.Within) with its bound and
# the largest error measured at each level, as a fraction of the bound.
# A fraction near 1 is a bound with no margin; one above 1 failed.
set -eu
pkgs=${*:-./runtime/cpu/... ./models/... ./compiler ./pio}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
levels=$(sh "$(dirname "$0")/cpu-levels.sh")
for l in $levels; do
	echo "tolerances.sh: PIO_CPU=$l go test $pkgs" >&2
	PIO_CPU=$l PIO_TOL_LOG=$dir/$l.tsv go test -count=1 -timeout 25m $pkgs >&2 || true
	touch "$dir/$l.tsv"
done
# arm64's portable kernels, whose Go code the compiler fuses into FMAs, under
# qemu-aarch64 when this amd64 machine has it (see make cross-arm64).
if [ "$(go env GOARCH)" = amd64 ] && command -v qemu-aarch64 >/dev/null 2>&1; then
	echo "tolerances.sh: GOARCH=arm64 go test -exec qemu-aarch64 $pkgs" >&2
	QEMU_LD_PREFIX=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu} GOARCH=arm64 PIO_TOL_LOG=$dir/arm64.tsv \
		go test -count=1 -timeout 25m -exec qemu-aarch64 $pkgs >&2 || true
	touch "$dir/arm64.tsv"
	levels="$levels arm64"
fi
# Per check (file:line and bound; a check whose bound varies by case, more
# than four values, is one row "varies"), per level: the largest err/bound.
cat "$dir"/*.tsv | awk -F'\t' '{ if (!(($1, $4) in seen)) { seen[$1, $4] = 1; nb[$1]++ } }
	END { for (s in nb) if (nb[s] > 4) print s }' >"$dir/varies"
for l in $levels; do
	awk -F'\t' -v l="$l" -v varies="$dir/varies" '
		BEGIN { while ((getline v <varies) > 0) V[v] = 1 }
		{ r = ($4 > 0) ? $3 / $4 : ($3 > 0 ? 1e99 : 0); print $1 "\t" (($1 in V) ? "varies" : $4) "\t" l "\t" r }' "$dir/$l.tsv"
done | awk -F'\t' -v levels="$levels" '
	{ c = $1 "\t" $2; k = c SUBSEP $3; check[c] = 1
	  if (!(k in worst) || $4 + 0 > worst[k] + 0) worst[k] = $4 }
	END {
		n = split(levels, L, " ")
		printf "| check | bound |"; for (i = 1; i <= n; i++) printf " %s |", L[i]; printf "\n"
		printf "|---|---|"; for (i = 1; i <= n; i++) printf "---|"; printf "\n"
		for (c in check) {
			split(c, f, "\t"); line = sprintf("| %s | %s |", f[1], f[2])
			for (i = 1; i <= n; i++) { k = c SUBSEP L[i]; line = line sprintf(" %s |", (k in worst) ? sprintf("%.3g", worst[k]) : "—") }
			print line
		}
	}' | { read -r h; read -r sep; echo "$h"; echo "$sep"; sort -t'|' -k2,2V -k3,3g; }
