package cpu

import (
	"fmt"

	"github.com/inference-pio/pio/runtime/engine"
)

// FromEngine makes a CPU backend for an opened engine; the weights stay in
// the engine's mapping (no copy), so the engine must outlive the backend.
func FromEngine(e *engine.Engine, opt Options) (*Backend, error) {
	p := e.Meta.Plan
	if p == nil {
		return nil, fmt.Errorf("cpu: engine has no plan")
	}
	ws := make([]Weight, len(p.Weights))
	for i := range p.Weights {
		j := e.PlanWeights[i]
		we := e.Weights[j]
		ws[i] = Weight{DType: we.DType, Shape: we.Shape, Data: e.WeightData(j)}
	}
	return New(p, ws, opt)
}
