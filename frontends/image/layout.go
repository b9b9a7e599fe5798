package image

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// TokenIDs are the special tokens of a Qwen3-VL prompt (config.json:
// image_token_id, vision_start_token_id, vision_end_token_id).
type TokenIDs struct {
	Image, VisionStart, VisionEnd int32
}

// Qwen3VLTokens are Qwen3-VL's ids: <|image_pad|> 151655, <|vision_start|>
// 151652, <|vision_end|> 151653.
var Qwen3VLTokens = TokenIDs{Image: 151655, VisionStart: 151652, VisionEnd: 151653}

// Layout is a prompt with its images laid out for the text stage.
type Layout struct {
	Tokens []int32 // each image's single <|image_pad|> expanded to Pixels.Rows()/merge² pads
	// Positions are the MRoPE positions, token-major [len(Tokens), 3] (t, h, w):
	// text tokens take p on all axes; image k's token (r, c) of its llm grid
	// takes (p, p+r, p+c), after which p advances by max(gh, gw)/merge.
	Positions []int32
	ImageMask []int32 // [len(Tokens)]: 1 at image tokens
	// RopeDelta is max position + 1 − len(Tokens): a decode step at cache
	// position q uses position q + RopeDelta on every axis.
	RopeDelta int32
	// CacheTokens is Tokens for prefix caching (kvcache.Allocator.Share and
	// Commit): every image token is replaced by a negative id derived from
	// the SHA-256 of its image's grid and pixel values and its index in the
	// image, so cached blocks are shared only between identical images.
	CacheTokens []int32
}

// ContentHash is the SHA-256 of an image's grid and pixel_values: equal for
// identical preprocessed images, whatever file they came from.
func (p *Pixels) ContentHash() [32]byte {
	h := sha256.New()
	var b [4]byte
	for _, v := range []int{p.GridT, p.GridH, p.GridW} {
		binary.LittleEndian.PutUint32(b[:], uint32(v))
		h.Write(b[:])
	}
	buf := make([]byte, 0, 4096)
	for _, v := range p.Values {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
		if len(buf) == cap(buf) {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// cacheID is the prefix-cache id of token j of an image with hash h: a
// splitmix64 of the hash's first 8 bytes and j, with the sign bit set so
// it never equals a vocabulary id.
func cacheID(h [32]byte, j int) int32 {
	z := binary.LittleEndian.Uint64(h[:8]) + uint64(j+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return int32(uint32(z) | 0x80000000)
}

// ExpandPrompt lays out a tokenized prompt in which each image is one
// <|image_pad|> token (as the chat template writes it, between
// <|vision_start|> and <|vision_end|>): the k-th pad becomes the tokens of
// images[k]. The number of pads must equal len(images).
func ExpandPrompt(ids []int32, images []*Pixels, tok TokenIDs, merge int) (*Layout, error) {
	if merge <= 0 {
		return nil, fmt.Errorf("image: merge size %d", merge)
	}
	l := &Layout{}
	k := 0
	p := int32(0)
	for _, id := range ids {
		if id != tok.Image {
			l.Tokens = append(l.Tokens, id)
			l.CacheTokens = append(l.CacheTokens, id)
			l.Positions = append(l.Positions, p, p, p)
			l.ImageMask = append(l.ImageMask, 0)
			p++
			continue
		}
		if k >= len(images) {
			return nil, fmt.Errorf("image: the prompt has more image placeholders than the %d images given", len(images))
		}
		px := images[k]
		k++
		if px.GridT != 1 || px.GridH%merge != 0 || px.GridW%merge != 0 {
			return nil, fmt.Errorf("image %d: grid %d×%d×%d is not a still image in %d×%d blocks", k-1, px.GridT, px.GridH, px.GridW, merge, merge)
		}
		gh, gw := px.GridH/merge, px.GridW/merge
		hash := px.ContentHash()
		for r := 0; r < gh; r++ {
			for c := 0; c < gw; c++ {
				l.CacheTokens = append(l.CacheTokens, cacheID(hash, r*gw+c))
				l.Tokens = append(l.Tokens, tok.Image)
				l.Positions = append(l.Positions, p, p+int32(r), p+int32(c))
				l.ImageMask = append(l.ImageMask, 1)
			}
		}
		p += int32(max(gh, gw))
	}
	if k != len(images) {
		return nil, fmt.Errorf("image: %d images given but the prompt has %d placeholders", len(images), k)
	}
	l.RopeDelta = p - int32(len(l.Tokens))
	return l, nil
}

// VisionInputs are the vision stage's runtime inputs for the images of one
// prefill, in the stage's [T, G, ...] layout: T = merged tokens (all images
// concatenated), G = merge² patches of one block.
type VisionInputs struct {
	Tokens   int       // T
	Pixels   []float32 // [T, G, C·T·P·P]: the images' pixel_values concatenated
	PosIdx   []int32   // [T, G, 4]: bilinear taps into the pos_embed table (side×side)
	PosW     []float32 // [T, G, 4]: their weights
	RoPEPos  []int32   // [T, G, 2]: (row, col) of each patch in its image's patch grid
	Segments []int32   // [T]: the image each token belongs to
}

// NewVisionInputs computes the vision stage's inputs as transformers does
// (get_vision_interpolation_indices_and_weights with bilinear,
// align_corners=True; get_vision_position_ids), for a learned position
// grid of side×side entries.
func NewVisionInputs(images []*Pixels, side, merge int) (*VisionInputs, error) {
	if side < 1 || merge < 1 {
		return nil, fmt.Errorf("image: position grid side %d, merge %d", side, merge)
	}
	v := &VisionInputs{}
	g := merge * merge
	for k, px := range images {
		if px.GridT != 1 || px.GridH%merge != 0 || px.GridW%merge != 0 || len(px.Values) != px.Rows()*px.RowSize() {
			return nil, fmt.Errorf("image %d: grid %d×%d×%d is not a still image in %d×%d blocks", k, px.GridT, px.GridH, px.GridW, merge, merge)
		}
		v.Pixels = append(v.Pixels, px.Values...)
		hTaps, hW := axisTaps(px.GridH, side)
		wTaps, wW := axisTaps(px.GridW, side)
		bw := px.GridW / merge
		for n := 0; n < px.Rows(); n++ {
			inCol, inRow := n%merge, (n/merge)%merge
			bc, br := (n/g)%bw, n/(g*bw)
			row, col := br*merge+inRow, bc*merge+inCol
			for i := 0; i < 2; i++ {
				for j := 0; j < 2; j++ {
					v.PosIdx = append(v.PosIdx, hTaps[row][i]*int32(side)+wTaps[col][j])
					v.PosW = append(v.PosW, hW[row][i]*wW[col][j])
				}
			}
			v.RoPEPos = append(v.RoPEPos, int32(row), int32(col))
		}
		for range px.Rows() / g {
			v.Segments = append(v.Segments, int32(k))
		}
		v.Tokens += px.Rows() / g
	}
	return v, nil
}

// axisTaps returns, for each of n grid positions, the two bilinear taps
// into a side-long axis and their f32 weights, as transformers computes
// them: src = i·(side−1)/max(n−1, 1) in f32, taps floor(src)+{0,1} clamped,
// weights max(0, 1 − |src − floor − o|).
func axisTaps(n, side int) ([][2]int32, [][2]float32) {
	taps := make([][2]int32, n)
	ws := make([][2]float32, n)
	den := float32(max(n-1, 1))
	for i := range n {
		src := float32(float32(i)*float32(side-1)) / den
		fl := float32(math.Floor(float64(src)))
		for o := 0; o < 2; o++ {
			t := min(max(int(fl)+o, 0), side-1)
			d := float32(math.Abs(float64((src - fl) - float32(o))))
			taps[i][o] = int32(t)
			ws[i][o] = max(1-d, 0)
		}
	}
	return taps, ws
}

// Prepared is everything a runtime needs to prefill a prompt with images:
// the vision stage's inputs and the text stage's layout.
type Prepared struct {
	Images []*Pixels
	Vision *VisionInputs // nil when there are no images
	Layout *Layout
}

// Prepare decodes and preprocesses the image files of one request (in
// prompt order), lays out the tokenized prompt, whose k-th <|image_pad|>
// stands for files[k], and computes the vision stage's inputs for a
// positionSide×positionSide learned position grid (48 for Qwen3-VL-2B:
// √num_position_embeddings).
func Prepare(files [][]byte, promptIDs []int32, tok TokenIDs, o Options, positionSide int) (*Prepared, error) {
	imgs, err := ProcessAll(files, o)
	if err != nil {
		return nil, err
	}
	l, err := ExpandPrompt(promptIDs, imgs, tok, o.MergeSize)
	if err != nil {
		return nil, err
	}
	pr := &Prepared{Images: imgs, Layout: l}
	if len(imgs) > 0 {
		if pr.Vision, err = NewVisionInputs(imgs, positionSide, o.MergeSize); err != nil {
			return nil, err
		}
	}
	return pr, nil
}

// Scatter places per-image-token features (the vision stage's
// image_embeds or deepstack.<k>, [image tokens, hidden] in prompt order)
// at the image rows of a token-aligned [len(Tokens), hidden] tensor, the
// text stage's input; other rows are zero.
func (l *Layout) Scatter(feats []float32, hidden int) ([]float32, error) {
	n := 0
	for _, m := range l.ImageMask {
		n += int(m)
	}
	if hidden <= 0 || len(feats) != n*hidden {
		return nil, fmt.Errorf("image: %d feature values for %d image tokens of width %d", len(feats), n, hidden)
	}
	out := make([]float32, len(l.Tokens)*hidden)
	r := 0
	for i, m := range l.ImageMask {
		if m != 0 {
			copy(out[i*hidden:(i+1)*hidden], feats[r*hidden:(r+1)*hidden])
			r++
		}
	}
	return out, nil
}
