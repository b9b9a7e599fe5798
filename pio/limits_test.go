package pio

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/ir"
)

// Qwen3-VL keeps max_position_embeddings and vocab_size in text_config: the
// engine's context limit and vocabulary come from there (the tiny model:
// 1024 positions, 256 tokens), not from the top level, where they are absent.
func TestVisionTextConfigLimits(t *testing.T) {
	e := vlEngine(t, Options{CacheTokens: 4096})
	if e.MaxModelLen() != 1024 {
		t.Errorf("MaxModelLen %d, want text_config's max_position_embeddings 1024", e.MaxModelLen())
	}
	if e.vocab != 256 {
		t.Errorf("vocabulary %d, want text_config's vocab_size 256", e.vocab)
	}
}

// An absent max_position_embeddings takes transformers' class default
// (Qwen3: 32768) as the context limit, not no limit at all.
func TestContextLimitClassDefault(t *testing.T) {
	dir := t.TempDir()
	src := "../testdata/tiny/qwen3-a"
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range ents {
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if de.Name() == "config.json" {
			var c map[string]any
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			delete(c, "max_position_embeddings")
			if b, err = json.Marshal(c); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, de.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: dir, Output: path, DType: ir.BF16}); err != nil {
		t.Fatal(err)
	}
	e, err := Load(path, Options{CacheTokens: 65536})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.MaxModelLen() != 32768 {
		t.Errorf("MaxModelLen %d, want Qwen3's default max_position_embeddings 32768", e.MaxModelLen())
	}
}
