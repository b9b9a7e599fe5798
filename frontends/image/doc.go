// Package image turns image files into the inputs of a Qwen3-VL vision
// tower, matching Hugging Face's Qwen2-VL image processor (the class that
// Qwen3-VL's preprocessor_config.json names): decode (JPEG, PNG, WebP),
// convert to RGB, smart_resize to multiples of patch·merge (32), resize with
// torchvision's antialiased bicubic on uint8 (which this package reproduces
// in integer arithmetic), normalise, and lay the patches out in 2×2
// merge-block order as pixel_values [N, C·T·P·P] with grid_thw.
//
// It also lays out the prompt side of an image: how many <|image_pad|>
// tokens it takes and the t/h/w MRoPE positions of each token (Layout), the
// vision stage's inputs (VisionInputs), and prefix-cache ids of image tokens
// derived from the image content. Prepare does all of it for one request.
//
// A prefill with images then runs (models/qwen3vl documents the stages):
// the "vision" plan over VisionInputs (T = merged tokens of all images);
// its outputs image_embeds and deepstack.<k> are scattered to the rows
// where Layout.ImageMask is 1 of [T_text, hidden] inputs of the text plan,
// which also takes mrope_positions = Layout.Positions and image_mask. Decode
// steps give every axis position cache_position + Layout.RopeDelta and an
// all-zero mask.
//
// It is not a general image library: no video, no colour management (ICC
// profiles are ignored, as HF ignores them), no encoding.
package image
