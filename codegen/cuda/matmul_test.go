package cuda

import (
	"strings"
	"testing"

	"github.com/inference-pio/pio/kernel/abi"
)

// matmulLaunches are the kernels of a step's launches that run at rows.
func matmulLaunches(m *Module, step, rows int) []abi.Launch {
	var ls []abi.Launch
	for _, l := range m.Launches {
		if l.Step == step && l.Runs(rows, rows, true) {
			ls = append(ls, l)
		}
	}
	return ls
}

// TestMatMulKernelByRows: at Qwen3-4B's shapes, each matmul step runs
// exactly one path at every row count: the TR = 4 GEMV up to 4 rows, the
// TR = 16 GEMV (one pass over W) from 5 to 16, split-K with at least 2
// blocks per H100 SM for the narrow steps from 17 to mmaSplitMaxRows, the
// 64×128 tensor-core kernel above; split-K's workspace holds its partials.
func TestMatMulKernelByRows(t *testing.T) {
	p := configPlan(t, "qwen3-4b")
	m, err := Generate(p)
	if err != nil {
		t.Fatal(err)
	}
	steps := map[int]bool{}
	for _, l := range m.Launches {
		if strings.HasPrefix(l.Kernel, "matmul_") && !strings.HasPrefix(l.Kernel, "matmul_q") {
			steps[l.Step] = true
		}
	}
	if len(steps) == 0 {
		t.Fatal("no matmul steps")
	}
	split := 0
	for step := range steps {
		for _, rows := range []int{1, 4, 5, 8, 16, 17, 40, 64, 100, 128, 129, 512} {
			ls := matmulLaunches(m, step, rows)
			var names []string
			for _, l := range ls {
				names = append(names, l.Kernel[:strings.LastIndexByte(l.Kernel, '_')])
			}
			got := strings.Join(names, "+")
			switch {
			case rows <= 4 || rows <= WarpMaxRows:
				if got != "matmul_warp" {
					t.Fatalf("step %d, %d rows: %s, want the GEMV", step, rows, got)
				}
				tr := map[bool]int64{true: 4, false: 16}[rows <= 4]
				if d := ls[0].Grid[1].Div; d != tr {
					t.Errorf("step %d, %d rows: GEMV with %d rows per block row, want %d", step, rows, d, tr)
				}
			case rows <= mmaSplitMaxRows && (got == "matmul_splitk+matmul_splitk_sum" || got == "matmul_splitk_norm+matmul_splitk+matmul_splitk_sum"):
				split++
				k := ls[len(ls)-2]
				blocks := k.Grid[0].Eval(0, 0, 0, 0) * k.Grid[1].Eval(int64(rows), int64(rows), 0, 0) * k.Grid[2].Eval(0, 0, 0, 0)
				if blocks < mmaSplitBlocks {
					t.Errorf("step %d, %d rows: split-K with %d blocks", step, rows, blocks)
				}
				n := int64(p.Weights[p.Steps[step].Args[1].Index].Shape[0])
				for _, l := range ls {
					if l.Workspace < k.Grid[2].Fixed*n || l.MaxRows != mmaSplitMaxRows || l.Params[len(l.Params)-1].Kind != abi.PWorkspace {
						t.Errorf("step %d: %s: workspace %d floats a row for %d parts of %d, rows ≤ %d", step, l.Kernel, l.Workspace, k.Grid[2].Fixed, n, l.MaxRows)
					}
				}
			case got != "matmul_mma":
				t.Fatalf("step %d, %d rows: %s", step, rows, got)
			case rows <= mmaSplitMaxRows:
				// Unsplit: enough tiles already (the logits).
				if b := ls[0].Grid[0].Eval(0, 0, 0, 0); b < mmaSplitBlocks {
					t.Errorf("step %d, %d rows: unsplit tensor-core kernel with %d column tiles", step, rows, b)
				}
			}
		}
	}
	if split == 0 {
		t.Error("no step took split-K")
	}
}

// TestMatMulRegisters compiles the matmul kernels of Qwen3-4B's shapes
// for sm_90a with ptxas's report: none spills, and none needs more
// registers than two 256-thread blocks per SM allow (128). Skips without
// nvcc.
func TestMatMulRegisters(t *testing.T) {
	nvcc := NVCCOrSkip(t)
	m, err := Generate(configPlan(t, "qwen3-4b"))
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	src.WriteString(prelude)
	n := 0
	for _, b := range m.bodies {
		if strings.Contains(b, "void __launch_bounds__(256) matmul_") {
			src.WriteString("\n" + b)
			n++
		}
	}
	checkRegisters(t, ptxasEntries(PtxasReport(t, nvcc, src.String(), "sm_90a"), "matmul_"), 128)
	if n == 0 {
		t.Fatal("no matmul kernels")
	}
}
