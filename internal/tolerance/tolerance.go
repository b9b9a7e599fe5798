// Package tolerance checks a test's measured numeric error against its
// bound and, when asked, records every check so that the bounds can be
// re-measured at each CPU kernel level.
//
// Bounds in this repository are set from measurements at every kernel level
// (PIO_CPU=generic|avx2|avx512), never from one machine. Tests compare
// through Within; `make tolerances` runs the numeric packages once per level
// with PIO_TOL_LOG set and prints, for each check, the largest error
// measured at each level as a fraction of its bound (scripts/tolerances.sh).
package tolerance

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// LogEnv names the environment variable holding the file that Within
// appends its records to; unset, nothing is recorded.
const LogEnv = "PIO_TOL_LOG"

var mu sync.Mutex

// Within reports whether err ≤ bound (the caller reports a failure in its
// own words), and records the check when PIO_TOL_LOG names a file: one
// tab-separated line of the check's file:line (the first caller in a
// _test.go file: see site), the test name, err and bound. A NaN err is
// never within its bound.
func Within(t testing.TB, err, bound float64) bool {
	t.Helper()
	if path := os.Getenv(LogEnv); path != "" {
		file, line := site()
		record(t, path, fmt.Sprintf("%s:%d\t%s\t%g\t%g\n", rel(file), line, t.Name(), err, bound))
	}
	return err <= bound
}

// site is where a check is made: the first caller in a _test.go file, so
// that a shared helper (modeltest.CheckGolden) called by several models'
// tests is recorded once per calling test, not merged into one row; else
// Within's direct caller.
func site() (string, int) {
	var pcs [16]uintptr
	n := runtime.Callers(3, pcs[:]) // skip Callers, site, Within
	frames := runtime.CallersFrames(pcs[:n])
	first, ok := frames.Next()
	for f := first; ok; f, ok = frames.Next() {
		if strings.HasSuffix(f.File, "_test.go") {
			return f.File, f.Line
		}
	}
	return first.File, first.Line
}

// rel shortens a source path to the part under the module root (the
// nearest directory above it holding go.mod), so records read alike on
// every machine.
func rel(file string) string {
	for dir := filepath.Dir(file); ; {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if r, err := filepath.Rel(dir, file); err == nil {
				return filepath.ToSlash(r)
			}
			return file
		}
		up := filepath.Dir(dir)
		if up == dir {
			return file
		}
		dir = up
	}
}

func record(t testing.TB, path, line string) {
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("%s: %v", LogEnv, err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		t.Errorf("%s: %v", LogEnv, err)
	}
}
