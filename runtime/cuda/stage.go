package cuda

import (
	"fmt"

	"github.com/inference-pio/pio/runtime/engine"
)

// StageFromEngine makes a CUDA backend for one plan of an opened engine:
// name "" is the main plan (as FromEngine), otherwise the stage of that
// name (Qwen3-VL's "vision"), run with the kernels the stage carries
// (format 1.3). A stage without kernels — an engine built for the CPU, or
// before stages carried their own — is an error wrapping ErrNoKernels
// that names the stage; there is no silent CPU fallback here (a caller
// that wants one checks errors.Is(err, ErrNoKernels)). The weights are
// uploaded from the engine's mapping; stages share them with the main
// plan but each backend holds its own copy on the device.
func StageFromEngine(e *engine.Engine, name string, opt Options) (*Backend, error) {
	if name == "" {
		return FromEngine(e, opt)
	}
	for k, st := range e.Meta.Stages {
		if st.Name != name {
			continue
		}
		if st.Plan == nil || k >= len(e.StageWeights) || len(e.StageWeights[k]) != len(st.Plan.Weights) {
			return nil, fmt.Errorf("cuda: stage %q: no plan or unmapped weights", name)
		}
		if st.Kernels == nil {
			return nil, fmt.Errorf("cuda: stage %q: %w", name, ErrNoKernels)
		}
		ws := make([]Weight, len(st.Plan.Weights))
		for i, j := range e.StageWeights[k] {
			we := e.Weights[j]
			ws[i] = Weight{DType: we.DType, Shape: we.Shape, Data: e.WeightData(j)}
		}
		b, err := New(st.Plan, ws, st.Kernels, opt)
		if err != nil {
			return nil, fmt.Errorf("cuda: stage %q: %w", name, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("cuda: engine has no stage %q", name)
}
