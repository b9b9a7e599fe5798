package image

import (
	"encoding/json"
	"fmt"
)

// ParseOptions reads a preprocessor_config.json of the Qwen2-VL image
// processor family into Options, starting from DefaultOptions: size
// {shortest_edge, longest_edge} (or the older min_pixels / max_pixels),
// patch_size, merge_size, temporal_patch_size, image_mean, image_std. It
// refuses settings this package does not implement (no resize, no
// rescale or normalise, a resample other than bicubic, a rescale factor
// other than 1/255).
func ParseOptions(data []byte) (Options, error) {
	o := DefaultOptions()
	var c struct {
		Size *struct {
			ShortestEdge *int `json:"shortest_edge"`
			LongestEdge  *int `json:"longest_edge"`
		} `json:"size"`
		MinPixels   *int      `json:"min_pixels"`
		MaxPixels   *int      `json:"max_pixels"`
		PatchSize   *int      `json:"patch_size"`
		MergeSize   *int      `json:"merge_size"`
		Temporal    *int      `json:"temporal_patch_size"`
		Mean        []float32 `json:"image_mean"`
		Std         []float32 `json:"image_std"`
		DoResize    *bool     `json:"do_resize"`
		DoRescale   *bool     `json:"do_rescale"`
		DoNormalize *bool     `json:"do_normalize"`
		Resample    *int      `json:"resample"`
		Rescale     *float64  `json:"rescale_factor"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return o, fmt.Errorf("preprocessor_config.json: %w", err)
	}
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	set(&o.MinPixels, c.MinPixels)
	set(&o.MaxPixels, c.MaxPixels)
	if c.Size != nil {
		set(&o.MinPixels, c.Size.ShortestEdge)
		set(&o.MaxPixels, c.Size.LongestEdge)
	}
	set(&o.PatchSize, c.PatchSize)
	set(&o.MergeSize, c.MergeSize)
	set(&o.TemporalPatchSize, c.Temporal)
	for _, f := range []struct {
		name string
		src  []float32
		dst  *[3]float32
	}{{"image_mean", c.Mean, &o.Mean}, {"image_std", c.Std, &o.Std}} {
		if f.src == nil {
			continue
		}
		if len(f.src) != 3 {
			return o, fmt.Errorf("preprocessor_config.json: %s has %d values, want 3", f.name, len(f.src))
		}
		copy(f.dst[:], f.src)
	}
	for _, b := range []struct {
		name string
		v    *bool
	}{{"do_resize", c.DoResize}, {"do_rescale", c.DoRescale}, {"do_normalize", c.DoNormalize}} {
		if b.v != nil && !*b.v {
			return o, fmt.Errorf("preprocessor_config.json: %s=false is not supported", b.name)
		}
	}
	if c.Resample != nil && *c.Resample != 3 {
		return o, fmt.Errorf("preprocessor_config.json: resample %d is not supported (3, bicubic)", *c.Resample)
	}
	if c.Rescale != nil && (*c.Rescale < 1/255.0-1e-12 || *c.Rescale > 1/255.0+1e-12) {
		return o, fmt.Errorf("preprocessor_config.json: rescale_factor %v is not supported (1/255)", *c.Rescale)
	}
	if err := o.check(); err != nil {
		return o, fmt.Errorf("preprocessor_config.json: %w", err)
	}
	return o, nil
}
