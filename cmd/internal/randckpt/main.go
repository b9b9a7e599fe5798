// Command randckpt writes a random-weight Qwen3 checkpoint (config.json and
// model.safetensors in bf16) for benchmarks and quantization accuracy runs:
//
//	go run ./cmd/internal/randckpt -o build/qwen3-0.6b-random [-shape qwen3-0.6b|qwen3-4b|tiny] [-layers N] [-seed S]
//
// Weights are N(0, 0.02²) like transformers' initializer_range, norms are
// 1 ± 0.1 uniform noise. The output is never committed: it is written under
// build/ by `make bench`. The same flags always give the same bytes.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"

	"github.com/inference-pio/pio/frontends/hf"
)

// shape is the part of a Qwen3 config that sizes the weights.
type shape struct {
	Hidden, Intermediate, Layers, Heads, KVHeads, HeadDim, Vocab int
}

var shapes = map[string]shape{
	// Qwen/Qwen3-0.6B's config.json.
	"qwen3-0.6b": {Hidden: 1024, Intermediate: 3072, Layers: 28, Heads: 16, KVHeads: 8, HeadDim: 128, Vocab: 151936},
	// Qwen/Qwen3-4B-Instruct-2507 (MODELS.md §2.1; its 5e6 rope theta is
	// written as the 0.6B's 1e6, which does not change the work per token).
	"qwen3-4b": {Hidden: 2560, Intermediate: 9728, Layers: 36, Heads: 32, KVHeads: 8, HeadDim: 128, Vocab: 151936},
	"tiny":     {Hidden: 256, Intermediate: 768, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 64, Vocab: 4096},
}

func main() {
	out := flag.String("o", "", "output directory (created)")
	name := flag.String("shape", "qwen3-0.6b", "qwen3-0.6b, qwen3-4b or tiny")
	layers := flag.Int("layers", 0, "override the number of layers (0: the shape's)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	s, ok := shapes[*name]
	if *out == "" || !ok || *layers < 0 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: randckpt -o DIR [-shape qwen3-0.6b|qwen3-4b|tiny] [-layers N] [-seed S]")
		os.Exit(2)
	}
	if *layers > 0 {
		s.Layers = *layers
	}
	if err := write(*out, s, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "randckpt:", err)
		os.Exit(1)
	}
}

func write(dir string, s shape, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	type spec struct {
		name  string
		shape []int64
		norm  bool
	}
	d := func(v ...int) []int64 {
		r := make([]int64, len(v))
		for i, x := range v {
			r[i] = int64(x)
		}
		return r
	}
	specs := []spec{{"model.embed_tokens.weight", d(s.Vocab, s.Hidden), false}, {"model.norm.weight", d(s.Hidden), true}}
	for l := 0; l < s.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		specs = append(specs,
			spec{p + "input_layernorm.weight", d(s.Hidden), true},
			spec{p + "post_attention_layernorm.weight", d(s.Hidden), true},
			spec{p + "self_attn.q_proj.weight", d(s.Heads*s.HeadDim, s.Hidden), false},
			spec{p + "self_attn.k_proj.weight", d(s.KVHeads*s.HeadDim, s.Hidden), false},
			spec{p + "self_attn.v_proj.weight", d(s.KVHeads*s.HeadDim, s.Hidden), false},
			spec{p + "self_attn.o_proj.weight", d(s.Hidden, s.Heads*s.HeadDim), false},
			spec{p + "self_attn.q_norm.weight", d(s.HeadDim), true},
			spec{p + "self_attn.k_norm.weight", d(s.HeadDim), true},
			spec{p + "mlp.gate_proj.weight", d(s.Intermediate, s.Hidden), false},
			spec{p + "mlp.up_proj.weight", d(s.Intermediate, s.Hidden), false},
			spec{p + "mlp.down_proj.weight", d(s.Hidden, s.Intermediate), false},
		)
	}
	tensors := make([]hf.Tensor, len(specs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, sp := range specs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			n := int64(1)
			for _, x := range sp.shape {
				n *= x
			}
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			data := make([]byte, 2*n)
			for j := int64(0); j < n; j++ {
				var v float32
				if sp.norm {
					v = 1 + 0.1*(2*r.Float32()-1)
				} else {
					v = 0.02 * float32(r.NormFloat64())
				}
				binary.LittleEndian.PutUint16(data[2*j:], hf.Float32ToBF16(v))
			}
			tensors[i] = hf.Tensor{Name: sp.name, DType: hf.BF16, Shape: sp.shape, Data: data}
		}()
	}
	wg.Wait()
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if err := hf.WriteSafetensors(w, tensors, map[string]string{"format": "pt"}); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	layerTypes := make([]string, s.Layers)
	for i := range layerTypes {
		layerTypes[i] = "full_attention"
	}
	cfg := map[string]any{
		"architectures": []string{"Qwen3ForCausalLM"}, "model_type": "qwen3", "dtype": "bfloat16",
		"hidden_size": s.Hidden, "intermediate_size": s.Intermediate, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "head_dim": s.HeadDim,
		"vocab_size": s.Vocab, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
		"max_position_embeddings": 40960, "tie_word_embeddings": true, "attention_bias": false,
		"layer_types": layerTypes, "bos_token_id": 151643, "eos_token_id": 151645,
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644)
}
