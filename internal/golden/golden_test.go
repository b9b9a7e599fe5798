package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoad(t *testing.T) {
	m, err := Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Prompts) == 0 || m.Meta["transformers"] == nil || len(m.Prompts[0].Greedy) != 16 {
		t.Errorf("qwen3-a goldens: %d prompts, meta %v", len(m.Prompts), m.Meta["transformers"])
	}
}

// TestLoadMalformedMeta: a golden.json that is not valid JSON is an error
// naming the file and the position, not an empty Meta.
func TestLoadMalformedMeta(t *testing.T) {
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join(root, "qwen3-a", "golden.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "golden.safetensors"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err != nil { // golden.json is optional
		t.Fatalf("without golden.json: %v", err)
	}
	meta := filepath.Join(dir, "golden.json")
	for _, tc := range []struct{ json, want string }{
		{"{\n  \"transformers\": \"5.17.0\",\n}", "line 3, column 1"},
		{`["not", "an", "object"]`, "cannot unmarshal array"},
	} {
		if err := os.WriteFile(meta, []byte(tc.json), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadDir(dir)
		if err == nil || !strings.Contains(err.Error(), meta) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want one naming %s and containing %q", tc.json, err, meta, tc.want)
		}
	}
	// An unreadable golden.json (here a directory) is an error too.
	if err := os.Remove(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(meta, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil {
		t.Error("golden.json a directory: no error")
	}
}
