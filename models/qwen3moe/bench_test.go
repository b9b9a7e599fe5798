package qwen3moe_test

import (
	"testing"

	"github.com/inference-pio/pio/internal/modeltest"
)

// BenchmarkDecode: Qwen3-Coder-30B-A3B at real widths, 4 layers
// (go test ./models/qwen3moe -run X -bench Decode -benchtime 20x).
func BenchmarkDecode(b *testing.B) { modeltest.BenchDecode(b, realConfig, 4, 8, 128) }
