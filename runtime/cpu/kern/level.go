package kern

import (
	"fmt"
	"os"
	"strings"
)

// Level is an instruction-set level of the kernels: each level uses the
// assembly of the levels below it too.
type Level int

// The kernel levels, lowest first.
const (
	Generic Level = iota // portable Go only
	AVX2                 // amd64 AVX2 + FMA assembly
	AVX512               // AVX-512 (F, BW, VL) dot products on top of AVX2
)

var levelNames = [...]string{Generic: "generic", AVX2: "avx2", AVX512: "avx512"}

// String is the level's name as PIO_CPU spells it.
func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// EnvVar names the environment variable that caps the kernel level below
// what the CPU supports ("generic", "avx2" or "avx512"), so that the paths
// other machines take can be run and tested on this one.
const EnvVar = "PIO_CPU"

// detected is the highest level this CPU runs; active is the one in use
// (detected, capped by PIO_CPU); envErr says why PIO_CPU was refused.
var (
	detected = detectLevel()
	active   Level
	envErr   error
)

func init() {
	active, envErr = levelFromEnv(os.Getenv(EnvVar), detected)
	setActive(active)
}

// levelFromEnv applies a PIO_CPU value to the detected level. An unknown name,
// or one above what the CPU runs, is an error and leaves the detected level.
func levelFromEnv(v string, det Level) (Level, error) {
	v = strings.TrimSpace(strings.ToLower(v))
	if v == "" {
		return det, nil
	}
	for l, name := range levelNames {
		if v != name {
			continue
		}
		if Level(l) > det {
			return det, fmt.Errorf("%s=%s: this CPU runs kernels up to %s", EnvVar, v, det)
		}
		return Level(l), nil
	}
	return det, fmt.Errorf("%s=%q is not a kernel level (generic, avx2, avx512)", EnvVar, v)
}

// setActive switches the kernels to level l (at most the detected level).
func setActive(l Level) {
	active = l
	useAVX2 = l >= AVX2
	useAVX512 = l >= AVX512
}

// Active returns the kernel level in use.
func Active() Level { return active }

// Detected returns the highest kernel level this CPU runs.
func Detected() Level { return detected }

// EnvError reports a PIO_CPU value that was refused (unknown, or above what
// this CPU runs), or nil. The kernels then run at the detected level;
// commands check this at start-up and stop with the error rather than run
// at a level the user did not ask for.
func EnvError() error {
	// The level was read at init, before go test records the environment a
	// test reads; reading it again here makes cached test results depend
	// on PIO_CPU for every test that builds a backend.
	_ = os.Getenv(EnvVar)
	return envErr
}

// Features names the instruction sets the kernels use, and says when
// PIO_CPU has capped them below what the CPU runs.
func Features() string {
	_ = os.Getenv(EnvVar) // for go test's cache, as in EnvError
	var s string
	switch active {
	case AVX512:
		s = "avx512+avx2+fma"
	case AVX2:
		s = "avx2+fma"
	default:
		s = "generic"
	}
	if active < detected {
		s += fmt.Sprintf(" (%s=%s; the CPU runs %s)", EnvVar, active, detected)
	}
	return s
}
