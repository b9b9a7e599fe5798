//go:build unix

package qwen3_test

import (
	"syscall"
	"time"
)

// cpuTime returns the user+system CPU time this process has used, which,
// unlike wall time, does not count time spent waiting for a core that
// other processes hold.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
