package pio

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/modeltest"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
)

const tinyVLDir = "../testdata/tiny/qwen3vl"

// vlEngine builds testdata/tiny/qwen3vl (two stages, the synthetic
// tokenizer) and loads it.
func vlEngine(t testing.TB, opt Options) *Engine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: path, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	e, err := Load(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// vlGolden returns transformers' input_ids with one <|image_pad|> per image,
// and its greedy continuation.
func vlGolden(t testing.TB) (prompt, greedyIDs []int32) {
	t.Helper()
	f, err := hf.OpenSafetensors(filepath.Join(tinyVLDir, "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	i64 := func(name string) []int32 {
		x, ok := f.Tensor(name)
		if !ok || x.DType != hf.I64 {
			t.Fatalf("golden %s missing or not i64", name)
		}
		out := make([]int32, len(x.Data)/8)
		for i := range out {
			out[i] = int32(int64(binary.LittleEndian.Uint64(x.Data[8*i:])))
		}
		return out
	}
	ids := i64("input_ids")
	for i, id := range ids {
		if id == 250 && i > 0 && ids[i-1] == 250 {
			continue
		}
		prompt = append(prompt, id)
	}
	return prompt, i64("greedy")
}

// TestVisionGenerateMatchesGolden: token ids with two images, run
// concurrently through small steps (the image spans split across prefill
// chunks), give transformers' greedy continuation; the repeat is served
// from the prefix cache, and the same tokens with the images swapped are
// not.
func TestVisionGenerateMatchesGolden(t *testing.T) {
	e := vlEngine(t, Options{MaxStepTokens: 5, MaxSeqs: 4, CacheTokens: 512, BlockSize: 4, Threads: 1})
	if !e.Vision() {
		t.Fatal("the tiny Qwen3-VL engine reports no vision stage")
	}
	prompt, want := vlGolden(t)
	imgs := modeltest.Images(t, "a.png", "b.png")
	opt := greedy(len(want))
	opt.Images = imgs
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.GenerateIDs(context.Background(), prompt, opt, nil)
			if err != nil {
				t.Error(err)
				return
			}
			if !slices.Equal(res.Tokens, want) {
				t.Errorf("greedy %v, transformers %v", res.Tokens, want)
			}
			if res.PromptTokens != len(prompt)+6 {
				t.Errorf("prompt tokens %d, want %d (8 image tokens for 2 pads)", res.PromptTokens, len(prompt)+6)
			}
		}()
	}
	wg.Wait()
	runs := e.vis.runs.Load()
	if runs < 1 || runs > 3 {
		t.Errorf("%d vision stage runs for 3 requests", runs)
	}
	res, err := e.GenerateIDs(context.Background(), prompt, opt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, want) || res.CachedTokens != 20 {
		t.Errorf("repeat: %v with %d cached tokens, want %v and 20 (every image token) cached", res.Tokens, res.CachedTokens, want)
	}
	if n := e.vis.runs.Load(); n != runs {
		t.Errorf("repeat: the vision stage ran although the cache held every image token")
	}
	swapped := opt
	swapped.Images = modeltest.Images(t, "b.png", "a.png")
	res, err = e.GenerateIDs(context.Background(), prompt, swapped, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.CachedTokens > 4 { // only the first block: 5 text tokens before the first image
		t.Errorf("swapped images: %d cached tokens, want at most the text before the first image", res.CachedTokens)
	}
	if slices.Equal(res.Tokens, want) {
		t.Errorf("swapped images gave the same continuation %v", res.Tokens)
	}
	if n := e.vis.runs.Load(); n != runs+1 {
		t.Errorf("swapped images: %d vision runs, want %d", n, runs+1)
	}

	// A text-only request on the same engine: MRoPE positions p, p, p and
	// no image features; it runs, and a pad without an image is refused.
	text := greedy(4)
	if res, err := e.GenerateIDs(context.Background(), []int32{1, 2, 3}, text, nil); err != nil || len(res.Tokens) != 4 {
		t.Errorf("text-only request: %v, %v", res.Tokens, err)
	}
	if _, err := e.GenerateIDs(context.Background(), prompt, text, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("image pads without images: %v, want ErrInvalid", err)
	}
	for _, c := range []struct {
		name string
		imgs [][]byte
	}{
		{"one image for two pads", imgs[:1]},
		{"three images for two pads", append(slices.Clone(imgs), imgs[0])},
		{"corrupt image", [][]byte{imgs[0], []byte("\x89PNG\r\n\x1a\nnot really")}},
	} {
		o := opt
		o.Images = c.imgs
		if _, err := e.GenerateIDs(context.Background(), prompt, o, nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, err)
		}
	}
}

// TestVisionChatMatchesGolden: a chat message of text and image parts
// (testdata/tiny/qwen3vl/chat_request.json, whose rendering transformers
// checked against the golden input_ids) gives the golden continuation.
func TestVisionChatMatchesGolden(t *testing.T) {
	e := vlEngine(t, Options{Threads: 1, CacheTokens: 512})
	_, want := vlGolden(t)
	var req struct {
		Messages []struct {
			Role    string
			Content []struct{ Type, Text string }
		}
		Rendered string
	}
	b, err := os.ReadFile(filepath.Join(tinyVLDir, "chat_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Fatal(err)
	}
	imgs := modeltest.Images(t, "a.png", "b.png")
	var msgs []Message
	for _, m := range req.Messages {
		msg := Message{Role: m.Role, Parts: []Part{}}
		for _, p := range m.Content {
			part := Part{Type: p.Type, Text: p.Text}
			if p.Type == "image" {
				part.Image, imgs = imgs[0], imgs[1:]
			}
			msg.Parts = append(msg.Parts, part)
		}
		msgs = append(msgs, msg)
	}
	copt := ChatOptions{GenerateOptions: greedy(len(want))}
	if got, err := e.RenderChat(msgs, copt); err != nil || got != req.Rendered {
		t.Fatalf("rendered %q, %v; transformers %q", got, err, req.Rendered)
	}
	res, err := e.Chat(context.Background(), msgs, copt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, want) {
		t.Errorf("greedy %v, transformers %v", res.Tokens, want)
	}
}

// TestVisionPreemption: more image requests than the KV cache holds at
// once; preempted ones are recomputed (image rows, then generated tokens
// at cache position + rope_delta) and still give the golden continuation.
func TestVisionPreemption(t *testing.T) {
	e := vlEngine(t, Options{MaxStepTokens: 8, MaxSeqs: 4, CacheTokens: 40, BlockSize: 4, Threads: 1})
	prompt, want := vlGolden(t)
	opt := greedy(len(want))
	opt.Images = modeltest.Images(t, "a.png", "b.png")
	// Rounds of concurrent requests until one was preempted (goroutine
	// timing decides how much they overlap).
	for round := 0; round < 10 && e.Stats().Preemptions == 0; round++ {
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.GenerateIDs(context.Background(), prompt, opt, nil)
				if err != nil || !slices.Equal(res.Tokens, want) {
					t.Errorf("greedy %v, %v; transformers %v", res.Tokens, err, want)
				}
			}()
		}
		wg.Wait()
	}
	if st := e.Stats(); st.Preemptions == 0 {
		t.Errorf("no preemption in 10 rounds (%+v): the test needs a smaller cache", st)
	}
}

// TestVisionBackendFactory: Options.Backend makes the vision stage's
// backend too (size.Stage "vision", one request's image tokens, one
// sequence), after the text plan's; the golden continuation comes through
// the factory's backends, and a factory that fails on the stage fails Load
// naming it.
func TestVisionBackendFactory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: path, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	var sizes []BackendSize
	opt := Options{Threads: 1, CacheTokens: 512, MaxImageTokens: 64, Backend: func(f *engine.Engine, sz BackendSize) (runtime.Backend, error) {
		sizes = append(sizes, sz)
		return cpu.StageFromEngine(f, sz.Stage, cpu.Options{MaxTokens: sz.MaxTokens, NumBlocks: sz.NumBlocks, BlockSize: sz.BlockSize, MaxSeqs: sz.MaxSeqs, Threads: sz.Threads})
	}}
	e, err := Load(path, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(sizes) != 2 || sizes[0].Stage != "" || sizes[1] != (BackendSize{Stage: "vision", MaxTokens: 64, MaxSeqs: 1, NumBlocks: 1, Threads: 1}) {
		t.Errorf("factory called with %+v", sizes)
	}
	prompt, want := vlGolden(t)
	gopt := greedy(len(want))
	gopt.Images = modeltest.Images(t, "a.png", "b.png")
	res, err := e.GenerateIDs(context.Background(), prompt, gopt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Tokens, want) {
		t.Errorf("greedy %v, transformers %v", res.Tokens, want)
	}

	opt.Backend = func(f *engine.Engine, sz BackendSize) (runtime.Backend, error) {
		if sz.Stage != "" {
			return nil, errors.New("no kernels for this stage")
		}
		return cpu.FromEngine(f, cpu.Options{MaxTokens: sz.MaxTokens, NumBlocks: sz.NumBlocks, BlockSize: sz.BlockSize, MaxSeqs: sz.MaxSeqs, Threads: sz.Threads})
	}
	if _, err := Load(path, opt); err == nil || !strings.Contains(err.Error(), "vision stage: no kernels for this stage") {
		t.Errorf("stage factory error: got %v", err)
	}
}

// TestVisionBindsByPlan: pio takes the vision stage, its inputs and the
// image features from the engine's plans: the tiny engine's features are
// the vision outputs the text plan takes (image_embeds, deepstack.0-2,
// 64 wide), and an engine whose plans pio cannot feed fails to load,
// naming what is wrong.
func TestVisionBindsByPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := compiler.Build(compiler.Options{Source: tinyVLDir, Output: path, DType: ir.BF16, Taps: true}); err != nil {
		t.Fatal(err)
	}
	rename := func(ts []ir.PlanTensor, from, to string) {
		i := slices.IndexFunc(ts, func(x ir.PlanTensor) bool { return x.Name == from })
		if i < 0 {
			t.Fatalf("no tensor %q", from)
		}
		ts[i].Name = to
	}
	for _, tc := range []struct {
		name, want string
		edit       func(m *engine.Metadata)
	}{
		{"ok", "", func(*engine.Metadata) {}},
		{"no pixel_values", `stages "vision" are not one vision stage`, func(m *engine.Metadata) {
			rename(m.Stages[0].Plan.Inputs, "pixel_values", "pixels")
		}},
		{"two stages", `stages "vision", "vision2" are not one vision stage`, func(m *engine.Metadata) {
			m.Stages = append(m.Stages, engine.Stage{Name: "vision2", Plan: m.Stages[0].Plan})
		}},
		{"unknown input", "vision stage: input seg i32 is none of the inputs pio computes from images", func(m *engine.Metadata) {
			rename(m.Stages[0].Plan.Inputs, "segments", "seg")
		}},
		{"no image mask", `the text plan has no input "image_mask"`, func(m *engine.Metadata) {
			rename(m.Plan.Inputs, "image_mask", "mask")
		}},
		{"no features", "no output of the vision stage is an input of the text plan", func(m *engine.Metadata) {
			for i := range m.Stages[0].Plan.Outputs {
				m.Stages[0].Plan.Outputs[i].Name += ".renamed"
			}
		}},
		{"not a feature", "text plan input mrope_positions i32 [T, 3] is not an image feature", func(m *engine.Metadata) {
			m.Stages[0].Plan.Outputs[len(m.Stages[0].Plan.Outputs)-1].Name = "mrope_positions"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := engine.Open(path, engine.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			tc.edit(&f.Meta)
			e, err := newEngine(f, Options{Threads: 1, CacheTokens: 64})
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("load: %v, want an error with %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer e.sched.Close()
			defer e.be.Close()
			defer e.vis.close()
			want := []string{"image_embeds", "deepstack.0", "deepstack.1", "deepstack.2"}
			if !slices.Equal(e.vis.feats, want) || e.vis.hidden != 64 || len(e.vis.inputs) != 5 || !slices.Contains(e.vis.inputs, "pixel_values") {
				t.Errorf("features %q (%d wide), inputs %q; want %q, 64 wide, the five of visionInputs", e.vis.feats, e.vis.hidden, e.vis.inputs, want)
			}
		})
	}
}
