package qwen3vl

import (
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
)

// StageNames are the engine stages of Qwen3-VL in run order; the last one
// ("text") is the engine's main plan, the others go to Metadata.Stages.
var StageNames = []string{"vision", "text"}

// StageNames implements models.Staged.
func (m *Model) StageNames() []string { return StageNames }

// BindStages implements models.Staged.
func (m *Model) BindStages(graphs []*ir.Graph, src models.Source, ignored func(string) bool) error {
	return BindStages(graphs, src, ignored)
}

// Stages returns the stage graphs in StageNames order.
func (m *Model) Stages(opt models.BuildOptions) ([]*ir.Graph, error) {
	v, err := m.BuildVision(opt)
	if err != nil {
		return nil, err
	}
	t, err := m.BuildText(opt)
	if err != nil {
		return nil, err
	}
	return []*ir.Graph{v, t}, nil
}

// patchWeight is the one tensor the graphs declare in another shape than
// the checkpoint's: the Conv3d kernel [D, C, Tp, P, P] as the matrix
// [D, C·Tp·P·P] (same bytes, row-major).
const patchWeight = "model.visual.patch_embed.proj.weight"

// BindStages checks the stage graphs against a checkpoint as models.Bind
// checks one graph, with two differences: a tensor one stage uses is not
// "unused" for another, and the patch embedding's 5-D kernel binds to its
// 2-D declaration when the element counts agree.
func BindStages(graphs []*ir.Graph, src models.Source, ignored func(string) bool) error {
	uses := make([]map[string]bool, len(graphs))
	for i, g := range graphs {
		uses[i] = map[string]bool{}
		for _, v := range g.Values {
			if v.Op == ir.OpWeight {
				uses[i][v.Name()] = true
			}
		}
	}
	for i, g := range graphs {
		others := func(name string) bool {
			if ignored != nil && ignored(name) {
				return true
			}
			for j, u := range uses {
				if j != i && u[name] {
					return true
				}
			}
			return false
		}
		if err := models.Bind(g, flatPatch{src}, others); err != nil {
			return err
		}
	}
	return nil
}

type flatPatch struct{ models.Source }

func (f flatPatch) Info(name string) (models.TensorInfo, bool) {
	info, ok := f.Source.Info(name)
	if !ok || name != patchWeight || len(info.Shape) != 5 {
		return info, ok
	}
	n := int64(1)
	for _, d := range info.Shape[1:] {
		n *= d
	}
	info.Shape = []int64{info.Shape[0], n}
	return info, true
}
