// Package image turns image files into the inputs of a Qwen3-VL vision
// tower, matching Hugging Face's Qwen2-VL image processor (the class that
// Qwen3-VL's preprocessor_config.json names): decode (JPEG, PNG, WebP),
// convert to RGB, smart_resize to multiples of patch·merge (32), resize with
// torchvision's antialiased bicubic on uint8 (which this package reproduces
// in integer arithmetic), normalise, and lay the patches out in 2×2
// merge-block order as pixel_values [N, C·T·P·P] with grid_thw.
//
// It also lays out the prompt side of an image: how many <|image_pad|>
// tokens it takes and the t/h/w MRoPE positions of each token (see Layout).
//
// It is not a general image library: no video, no colour management (ICC
// profiles are ignored, as HF ignores them), no encoding.
package image
