package image

import (
	"os"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	b, err := os.ReadFile("../../testdata/tiny/qwen3vl/preprocessor_config.json")
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOptions(b)
	if err != nil {
		t.Fatal(err)
	}
	if o.MinPixels != 32*32 || o.MaxPixels != 96*96 || o.PatchSize != 16 || o.MergeSize != 2 || o.Mean != [3]float32{0.5, 0.5, 0.5} {
		t.Errorf("options %+v", o)
	}
	// Qwen3-VL-2B-Instruct's file (MODELS.md §6.3).
	real := `{"image_processor_type": "Qwen2VLImageProcessorFast", "size": {"shortest_edge": 65536, "longest_edge": 16777216},
	  "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
	  "resample": 3, "rescale_factor": 0.00392156862745098, "do_convert_rgb": true}`
	o, err = ParseOptions([]byte(real))
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultOptions()
	if o.MinPixels != d.MinPixels || o.MaxPixels != d.MaxPixels || o.PatchSize != d.PatchSize || o.Std != d.Std {
		t.Errorf("real config %+v, defaults %+v", o, d)
	}
	for _, c := range []struct{ json, want string }{
		{`{"resample": 2}`, "resample 2"},
		{`{"do_normalize": false}`, "do_normalize=false"},
		{`{"image_mean": [0.5]}`, "has 1 values"},
		{`{"size": {"shortest_edge": 100, "longest_edge": 10}}`, "bad pixel bounds"},
		{`{"rescale_factor": 1}`, "rescale_factor"},
		{`[1]`, "preprocessor_config.json"},
	} {
		if _, err := ParseOptions([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
}
