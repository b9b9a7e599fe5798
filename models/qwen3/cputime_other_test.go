//go:build !unix

package qwen3_test

import "time"

// cpuTime is not measured on this platform.
func cpuTime() time.Duration { return 0 }
