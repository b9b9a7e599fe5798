package abi

import (
	"fmt"
	"strings"
)

// Image is one compiled form of a module.
type Image struct {
	Arch string // "sm_80", "sm_90a", ... (a cubin) or "compute_90" (PTX)
	Data []byte
}

// IsPTX reports whether the image is PTX text (the driver JIT-compiles it).
func (im Image) IsPTX() bool { return strings.HasPrefix(im.Arch, "compute_") }

// SelectImage picks the image for a device of compute capability
// major.minor: the cubin built for exactly that arch (sm_90a only on 9.0),
// else the newest cubin of the same major and a lower minor, else the
// newest PTX not newer than the device (JIT-compiled by the driver). It
// reports false when nothing fits.
func SelectImage(images []Image, major, minor int) (int, bool) {
	best, bestKey := -1, -1
	dev := major*10 + minor
	for i, im := range images {
		var n int
		var suffix string
		name := strings.TrimPrefix(strings.TrimPrefix(im.Arch, "sm_"), "compute_")
		if k := strings.IndexFunc(name, func(r rune) bool { return r < '0' || r > '9' }); k >= 0 {
			name, suffix = name[:k], name[k:]
		}
		if _, err := fmt.Sscanf(name, "%d", &n); err != nil {
			continue
		}
		var key int
		switch {
		case im.IsPTX():
			if n > dev || suffix != "" {
				continue
			}
			key = n // PTX ranks below any cubin
		case suffix != "": // arch-specific (sm_90a): exactly that device
			if n != dev {
				continue
			}
			key = 3000 + n
		case n/10 == major && n <= dev:
			key = 1000 + n
			if n == dev {
				key = 2000 + n
			}
		default:
			continue
		}
		if key > bestKey {
			best, bestKey = i, key
		}
	}
	return best, best >= 0
}
