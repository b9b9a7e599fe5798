#!/bin/sh
# cpu-levels.sh: prints the CPU kernel levels this machine runs, one per
# line, lowest first (the values PIO_CPU accepts here; see
# runtime/cpu/kern/level.go for the detection the binaries do).
echo generic
case $(uname -m) in
x86_64 | amd64) ;;
*) exit 0 ;;
esac
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
has() { case " $flags " in *" $1 "*) return 0 ;; esac; return 1; }
has avx2 && has fma || exit 0
echo avx2
has avx512f && has avx512bw && has avx512vl && echo avx512
exit 0
