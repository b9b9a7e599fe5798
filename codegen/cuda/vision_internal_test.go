package cuda

import (
	"slices"
	"testing"
)

// TestMRoPEAxes: Qwen3-VL's interleaved [24,20,20] gives h the slots 1, 4,
// …, 58 and w 2, 5, …, 59 (20 each) and t the other 24; chunked gives each
// axis a contiguous run.
func TestMRoPEAxes(t *testing.T) {
	ax := mropeAxes([]int64{24, 20, 20}, "interleaved")
	if len(ax) != 64 {
		t.Fatalf("%d slots", len(ax))
	}
	var per [3][]int
	for i, a := range ax {
		per[a] = append(per[a], i)
	}
	for a := 1; a < 3; a++ {
		if len(per[a]) != 20 || per[a][0] != a || per[a][19] != a+57 {
			t.Errorf("axis %d: slots %v", a, per[a])
		}
	}
	if len(per[0]) != 24 || per[0][19] != 57 || !slices.Equal(per[0][20:], []int{60, 61, 62, 63}) {
		t.Errorf("axis 0: slots %v", per[0])
	}
	if got := mropeAxes([]int64{2, 1, 3}, "chunked"); !slices.Equal(got, []int{0, 0, 1, 2, 2, 2}) {
		t.Errorf("chunked [2 1 3]: %v", got)
	}
}
