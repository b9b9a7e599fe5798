package hf

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkpointFiles describes a checkpoint directory to write: safetensors
// files by name (each a list of tensors) and other files by contents.
type checkpointFiles struct {
	shards map[string][]Tensor
	files  map[string]string
}

func (cf checkpointFiles) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, tensors := range cf.shards {
		writeSafetensors(t, filepath.Join(dir, name), tensors, map[string]string{"format": "pt"})
	}
	for name, data := range cf.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func vec(name string, vs ...float32) Tensor {
	return Tensor{Name: name, DType: F32, Shape: []int64{int64(len(vs))}, Data: f32Bytes(vs...)}
}

const tinyConfig = `{"model_type": "qwen3", "hidden_size": 4}`

func TestOpenCheckpoint(t *testing.T) {
	index := `{"metadata": {"total_size": 24}, "weight_map": {
		"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
		"model.norm.weight": "model-00002-of-00002.safetensors",
		"lm_head.weight": "model-00002-of-00002.safetensors"}}`
	tests := []struct {
		name      string
		files     checkpointFiles
		wantNames []string
	}{
		{
			name: "single file",
			files: checkpointFiles{
				shards: map[string][]Tensor{"model.safetensors": {vec("b", 2), vec("a", 1)}},
				files:  map[string]string{"config.json": tinyConfig, "tokenizer.json": `{}`},
			},
			wantNames: []string{"a", "b"},
		},
		{
			name: "sharded with index",
			files: checkpointFiles{
				shards: map[string][]Tensor{
					"model-00001-of-00002.safetensors": {vec("model.embed_tokens.weight", 1, 2)},
					"model-00002-of-00002.safetensors": {vec("model.norm.weight", 3), vec("lm_head.weight", 4, 5, 6)},
					"consolidated.safetensors":         {vec("model.norm.weight", 9)}, // ignored: not in the index
				},
				files: map[string]string{"config.json": tinyConfig, IndexFile: index},
			},
			wantNames: []string{"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"},
		},
		{
			name: "shards without index",
			files: checkpointFiles{
				shards: map[string][]Tensor{"b.safetensors": {vec("y", 1)}, "a.safetensors": {vec("x", 1)}},
				files:  map[string]string{"config.json": tinyConfig, "notes.txt": "x"},
			},
			wantNames: []string{"x", "y"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.files.write(t)
			c, err := OpenCheckpoint(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if diff := cmp.Diff(c.Names(), tt.wantNames); diff != "" {
				t.Errorf("Names (-got +want):\n%s", diff)
			}
			if c.Dir() != dir || c.Config == nil || c.Config.HiddenSize != 4 {
				t.Errorf("Dir %q, Config %+v", c.Dir(), c.Config)
			}
			for _, name := range tt.wantNames {
				tensor, ok := c.Tensor(name)
				if !ok || tensor.Name != name {
					t.Fatalf("Tensor(%q) = %v, %v", name, tensor, ok)
				}
				if _, err := tensor.Float32(); err != nil {
					t.Error(err)
				}
			}
			if _, ok := c.Tensor("missing"); ok {
				t.Error(`Tensor("missing") found`)
			}
			if got, err := c.ReadFile("config.json"); err != nil || string(got) != tinyConfig {
				t.Errorf("ReadFile(config.json) = %q, %v", got, err)
			}
			if _, err := c.ReadFile("chat_template.jinja"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("ReadFile of an absent file: err = %v, want fs.ErrNotExist", err)
			}
			if _, err := c.ReadFile("../config.json"); err == nil {
				t.Error("ReadFile(../config.json) succeeded")
			}
			if err := c.Close(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("index values", func(t *testing.T) {
		c, err := OpenCheckpoint(tests[1].files.write(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		norm, _ := c.Tensor("model.norm.weight")
		if got, _ := norm.Float32(); !cmp.Equal(got, []float32{3}) {
			t.Errorf("model.norm.weight = %v, want [3] from the indexed shard", got)
		}
	})
}

func TestOpenCheckpointErrors(t *testing.T) {
	shards := map[string][]Tensor{
		"s1.safetensors": {vec("a", 1)},
		"s2.safetensors": {vec("b", 1)},
	}
	tests := []struct {
		name  string
		files checkpointFiles
		want  string
	}{
		{
			"no safetensors", checkpointFiles{files: map[string]string{"config.json": tinyConfig}},
			"no safetensors files in ",
		},
		{
			"no config", checkpointFiles{shards: shards},
			"config.json: no such file",
		},
		{
			"bad config", checkpointFiles{shards: shards, files: map[string]string{"config.json": `{"hidden_size": -4}`}},
			"config.json: hidden_size: must not be negative",
		},
		{
			"duplicate across shards", checkpointFiles{
				shards: map[string][]Tensor{"s1.safetensors": {vec("a", 1)}, "s2.safetensors": {vec("a", 2)}},
				files:  map[string]string{"config.json": tinyConfig},
			},
			`tensor "a" is in both s1.safetensors and s2.safetensors`,
		},
		{
			"index names a missing tensor", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig,
				IndexFile:     `{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s2.safetensors"}}`,
			}},
			`model.safetensors.index.json maps tensor "c" to s2.safetensors, but it is in no shard`,
		},
		{
			"index names the wrong shard", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig,
				IndexFile:     `{"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}`,
			}},
			`maps tensor "b" to s1.safetensors, but it is in no shard`,
		},
		{
			"index names a tensor of another listed shard", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig,
				IndexFile:     `{"weight_map": {"a": "s2.safetensors", "b": "s2.safetensors", "x": "s1.safetensors"}}`,
			}},
			`maps tensor "a" to s2.safetensors, but it is in s1.safetensors`,
		},
		{
			"index names a missing shard", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig,
				IndexFile:     `{"weight_map": {"a": "s1.safetensors", "b": "s3.safetensors"}}`,
			}},
			"s3.safetensors: no such file",
		},
		{
			"index escapes the directory", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig,
				IndexFile:     `{"weight_map": {"a": "../s1.safetensors"}}`,
			}},
			`shard "../s1.safetensors" is not a file inside the checkpoint directory`,
		},
		{
			"bad index JSON", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig, IndexFile: `{"weight_map": {"a": 1}}`,
			}},
			IndexFile + ": json: cannot unmarshal number",
		},
		{
			"index without weight_map", checkpointFiles{shards: shards, files: map[string]string{
				"config.json": tinyConfig, IndexFile: `{"metadata": {}}`,
			}},
			IndexFile + ": no weight_map",
		},
		{
			"broken shard", checkpointFiles{
				shards: shards,
				files:  map[string]string{"config.json": tinyConfig, "s3.safetensors": "short"},
			},
			"s3.safetensors: file is 5 bytes, too small",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.files.write(t)
			c, err := OpenCheckpoint(dir)
			if err == nil {
				c.Close()
				t.Fatalf("OpenCheckpoint succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q\nwant it to name %s and contain %q", err, dir, tt.want)
			}
		})
	}
	if _, err := OpenCheckpoint(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenCheckpoint(missing dir): err = %v, want fs.ErrNotExist", err)
	}
}
