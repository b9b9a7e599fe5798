package glm4moelite_test

import (
	"testing"

	"github.com/inference-pio/pio/internal/modeltest"
)

// BenchmarkDecode: GLM-4.7-Flash at real widths, 4 layers (one dense, three MoE)
// (go test ./models/glm4moelite -run X -bench Decode -benchtime 20x).
func BenchmarkDecode(b *testing.B) { modeltest.BenchDecode(b, realConfig, 4, 4, 64) }
