package cuda

import (
	"math"
	"testing"
	"unsafe"

	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/sample"
)

// The device argmax keeps runtime.Argmaxer's contract on rows the model
// should never produce: the first index of the maximum on ties, NaN never
// winning, and -1 where a row has no finite maximum (all NaN, +Inf, or all
// -Inf), which the sampler turns into its non-finite error.
func TestEmulatedArgmaxRows(t *testing.T) {
	gxx := useFakeDriver(t)
	gpu, _, _, _ := emuBackends(t, gxx, "qwen3-a", ir.F32, false)
	bt := &runtime.Batch{Seqs: []runtime.SeqView{{Blocks: []int32{0, 1}}}}
	const rows = 6
	for i := 0; i < rows; i++ {
		bt.Tokens = append(bt.Tokens, int32(i+1))
		bt.Positions = append(bt.Positions, int32(i))
		bt.SeqOfToken = append(bt.SeqOfToken, 0)
		bt.LogitRows = append(bt.LogitRows, int32(i))
	}
	if err := gpu.Step(bt); err != nil {
		t.Fatal(err)
	}
	logits, shape, err := gpu.Output("logits")
	if err != nil {
		t.Fatal(err)
	}
	v := shape[1]
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	x := make([]float32, rows*v)
	for i := range x {
		x[i] = float32(i%v%97) * 0.01
	}
	row := func(r int) []float32 { return x[r*v : (r+1)*v] }
	row(0)[v-1], row(0)[3] = 5, 5 // tie: the lower index
	row(1)[7], row(1)[0] = nan, nan
	row(1)[v/2] = 9 // NaN elsewhere does not win
	for i := range row(2) {
		row(2)[i] = nan
	}
	row(3)[11] = inf
	for i := range row(4) {
		row(4)[i] = -inf
	}
	// row 5: the model's own values, copied in
	copy(row(5), logits[5*v:6*v])
	d := gpu.d
	if err := d.check(d.cuMemcpyHtoD(gpu.a.buffers[gpu.outputs["logits"]], unsafe.Pointer(&x[0]), uint64(4*len(x))), "upload"); err != nil {
		t.Fatal(err)
	}
	ids, err := gpu.Argmax()
	if err != nil {
		t.Fatal(err)
	}
	want := []int32{3, int32(v / 2), -1, -1, -1, sample.Argmax(row(5))}
	for r := range want {
		if ids[r] != want[r] {
			t.Errorf("row %d: device argmax %d, want %d", r, ids[r], want[r])
		}
	}
}
