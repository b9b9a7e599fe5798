package hf

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// IndexFile is the name of a sharded checkpoint's index.
const IndexFile = "model.safetensors.index.json"

// Checkpoint is a Hugging Face checkpoint directory opened for reading: its
// config.json and the tensors of its safetensors files, memory-mapped.
type Checkpoint struct {
	// Config is the parsed config.json.
	Config *Config

	dir     string
	files   []*SafetensorsFile
	tensors map[string]*Tensor
	names   []string
}

// OpenCheckpoint opens the checkpoint in dir. The tensors come from the
// shards that model.safetensors.index.json names when it exists (each
// indexed tensor must be in the shard the index says), else from
// model.safetensors, else from every *.safetensors file in dir. Tensors of an
// indexed shard that the index does not list are kept, as transformers keeps
// them; a tensor name found in two files is an error. config.json is
// required.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("open checkpoint: %s is not a directory", dir)
	}
	cfg, err := LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	shards, index, err := findShards(dir)
	if err != nil {
		return nil, fmt.Errorf("open checkpoint: %w", err)
	}
	c := &Checkpoint{Config: cfg, dir: dir, tensors: make(map[string]*Tensor)}
	owner := make(map[string]string) // tensor name -> shard file
	for _, shard := range shards {
		f, err := OpenSafetensors(filepath.Join(dir, shard))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("open checkpoint: %w", err)
		}
		c.files = append(c.files, f)
		for _, name := range f.names {
			if prev, dup := owner[name]; dup {
				c.Close()
				return nil, fmt.Errorf("open checkpoint %s: tensor %q is in both %s and %s", dir, name, prev, shard)
			}
			owner[name] = shard
			c.tensors[name], _ = f.Tensor(name)
			c.names = append(c.names, name)
		}
	}
	indexed := make([]string, 0, len(index))
	for name := range index {
		indexed = append(indexed, name)
	}
	slices.Sort(indexed) // report the first problem deterministically
	for _, name := range indexed {
		want := filepath.FromSlash(index[name])
		if got, ok := owner[name]; !ok || got != want {
			where := "in no shard"
			if ok {
				where = "in " + got
			}
			c.Close()
			return nil, fmt.Errorf("open checkpoint %s: %s maps tensor %q to %s, but it is %s", dir, IndexFile, name, want, where)
		}
	}
	slices.Sort(c.names)
	return c, nil
}

// findShards returns the safetensors files of dir (relative names, in
// opening order) and the index's weight map when there is one.
func findShards(dir string) ([]string, map[string]string, error) {
	indexPath := filepath.Join(dir, IndexFile)
	data, err := os.ReadFile(indexPath)
	switch {
	case err == nil:
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", indexPath, JSONError(data, err))
		}
		if len(idx.WeightMap) == 0 {
			return nil, nil, fmt.Errorf("%s: no weight_map", indexPath)
		}
		var shards []string
		for name, shard := range idx.WeightMap {
			s := filepath.FromSlash(shard)
			if !filepath.IsLocal(s) {
				return nil, nil, fmt.Errorf("%s: tensor %q: shard %q is not a file inside the checkpoint directory", indexPath, name, shard)
			}
			if !slices.Contains(shards, s) {
				shards = append(shards, s)
			}
		}
		slices.Sort(shards)
		return shards, idx.WeightMap, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		return []string{"model.safetensors"}, nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	var shards []string
	for _, e := range entries { // ReadDir sorts by name
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".safetensors") {
			shards = append(shards, e.Name())
		}
	}
	if len(shards) == 0 {
		return nil, nil, fmt.Errorf("no safetensors files in %s", dir)
	}
	return shards, nil, nil
}

// Dir returns the checkpoint's directory.
func (c *Checkpoint) Dir() string { return c.dir }

// Names returns the names of all tensors, sorted.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Tensor returns the named tensor. Its Data aliases the memory map of its
// shard and is valid until Close.
func (c *Checkpoint) Tensor(name string) (*Tensor, bool) {
	t, ok := c.tensors[name]
	return t, ok
}

// ReadFile reads an auxiliary file of the checkpoint, such as tokenizer.json,
// tokenizer_config.json, chat_template.jinja or generation_config.json. When
// the file does not exist the error wraps fs.ErrNotExist.
func (c *Checkpoint) ReadFile(name string) ([]byte, error) {
	if !filepath.IsLocal(name) {
		return nil, fmt.Errorf("checkpoint %s: %q is not a file name inside the checkpoint directory", c.dir, name)
	}
	return os.ReadFile(filepath.Join(c.dir, name))
}

// Close unmaps every shard; all tensors become invalid.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	c.files, c.tensors = nil, nil
	return errors.Join(errs...)
}
