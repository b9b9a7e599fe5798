package main

import (
	"fmt"
	"strings"

	"github.com/inference-pio/pio/runtime/engine"
)

// kernelsLine summarises an engine's CUDA kernels section for inspect.
func kernelsLine(k *engine.Kernels) string {
	if k == nil {
		return "none (CPU only; pioc build --target cuda adds them)"
	}
	names := map[string]bool{}
	for _, l := range k.Launches {
		names[l.Kernel] = true
	}
	var imgs []string
	for _, im := range k.Images {
		imgs = append(imgs, fmt.Sprintf("%s %.1f KiB", im.Arch, float64(len(im.Data))/1024))
	}
	return fmt.Sprintf("%d CUDA kernels, %d launches; %s; %s", len(names), len(k.Launches), strings.Join(imgs, ", "), k.Compiler)
}
