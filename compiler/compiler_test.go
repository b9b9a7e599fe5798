package compiler

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/models"
	"github.com/inference-pio/pio/runtime/engine"
)

func tinyDir(t *testing.T, name string) string {
	t.Helper()
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, name)
}

// copyDir copies a checkpoint directory's regular files.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), "golden") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBuildFromHFCache(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	repo := filepath.Join(home, "hub", "models--Qwen--Qwen3-0.6B")
	copyDir(t, tinyDir(t, "qwen3-a"), filepath.Join(repo, "snapshots", "0123abcd"))
	if err := os.MkdirAll(filepath.Join(repo, "refs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "refs", "main"), []byte("0123abcd"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "e.pio")
	res, err := Build(Options{Source: "qwen3-0.6b", Output: out})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(res.Checkpoint, "0123abcd") {
		t.Errorf("built from %s, want the cached snapshot", res.Checkpoint)
	}
}

func TestBuildNoCheckpointFound(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	_, err := Build(Options{Source: "qwen3-0.6b", Output: filepath.Join(t.TempDir(), "e.pio")})
	if err == nil || !strings.Contains(err.Error(), "Qwen/Qwen3-0.6B") || !strings.Contains(err.Error(), home) {
		t.Fatalf("want an error naming the repo and where it looked, got %v", err)
	}
	_, err = Build(Options{Source: "no-such-model", Output: filepath.Join(t.TempDir(), "e.pio")})
	if err == nil || !strings.Contains(err.Error(), "qwen3-0.6b") {
		t.Fatalf("want an error listing known models, got %v", err)
	}
}

// Building twice gives byte-identical engines.
func TestBuildDeterministic(t *testing.T) {
	dir := t.TempDir()
	var files [2][]byte
	for i := range files {
		p := filepath.Join(dir, "e"+string(rune('0'+i))+".pio")
		if _, err := Build(Options{Source: tinyDir(t, "qwen3-b"), Output: p, DType: ir.BF16}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		files[i] = b
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("two builds of the same checkpoint differ")
	}
}

// rewrite copies qwen3-a into a temp dir, applying edit to its tensors.
func rewrite(t *testing.T, edit func(ts []hf.Tensor) []hf.Tensor) string {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, tinyDir(t, "qwen3-a"), dir)
	f, err := hf.OpenSafetensors(filepath.Join(tinyDir(t, "qwen3-a"), "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []hf.Tensor
	for _, n := range f.Names() {
		tt, _ := f.Tensor(n)
		ts = append(ts, *tt)
	}
	var buf bytes.Buffer
	if err := hf.WriteSafetensors(&buf, edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBindReportsEveryProblem(t *testing.T) {
	dir := rewrite(t, func(ts []hf.Tensor) []hf.Tensor {
		var out []hf.Tensor
		for _, x := range ts {
			switch x.Name {
			case "model.layers.1.mlp.up_proj.weight":
				continue // missing
			case "model.layers.0.self_attn.k_norm.weight":
				x.Shape = []int64{16, 2} // wrong shape, same bytes
			}
			out = append(out, x)
		}
		return append(out, hf.Tensor{Name: "model.extra.weight", DType: hf.F32, Shape: []int64{1}, Data: make([]byte, 4)})
	})
	_, err := Build(Options{Source: dir, Output: filepath.Join(t.TempDir(), "e.pio")})
	var be *models.BindError
	if !errors.As(err, &be) {
		t.Fatalf("want a *models.BindError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"missing: model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.k_norm.weight: checkpoint has BF16[16 2]", "unexpected: model.extra.weight", "3 problems"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
}

func TestBadInputsGiveClearErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"truncated safetensors", func(dir string) {
			p := filepath.Join(dir, "model.safetensors")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, "model.safetensors"},
		{"bad config json", func(dir string) {
			os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"hidden_size": 64,`), 0o644)
		}, "config.json"},
		{"config wrong type", func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			os.WriteFile(filepath.Join(dir, "config.json"), bytes.Replace(b, []byte(`"hidden_size": 64`), []byte(`"hidden_size": "64"`), 1), 0o644)
		}, "hidden_size"},
		{"unsupported architecture", func(dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, "config.json"))
			os.WriteFile(filepath.Join(dir, "config.json"), bytes.Replace(b, []byte(`"Qwen3ForCausalLM"`), []byte(`"MambaForCausalLM"`), 1), 0o644)
		}, "MambaForCausalLM"},
		{"no weights", func(dir string) { os.Remove(filepath.Join(dir, "model.safetensors")) }, "safetensors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			copyDir(t, tinyDir(t, "qwen3-a"), dir)
			tc.setup(dir)
			out := filepath.Join(t.TempDir(), "e.pio")
			_, err := Build(Options{Source: dir, Output: out})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
			if _, statErr := os.Stat(out); statErr == nil {
				t.Error("a failed build left an engine file behind")
			}
		})
	}
}

// Qwen3-VL builds by name from the HF cache into a two-stage engine.
func TestBuildStagedFromHFCache(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	copyDir(t, tinyDir(t, "qwen3vl"), filepath.Join(home, "hub", "models--Qwen--Qwen3-VL-2B-Instruct", "snapshots", "r1"))
	out := filepath.Join(t.TempDir(), "vl.pio")
	if _, err := Build(Options{Source: "qwen3-vl-2b", Output: out, Check: true}); err != nil {
		t.Fatal(err)
	}
	e, err := engine.Open(out, engine.OpenOptions{VerifyWeights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if len(e.Meta.Stages) != 1 || e.Meta.Stages[0].Name != "vision" || e.Meta.Plan == nil {
		t.Errorf("got %d stages, want a vision stage and the text plan", len(e.Meta.Stages))
	}
	if _, err := Build(Options{Source: "qwen3-vl-2b", Output: out, Target: TargetCUDA, NVCC: "/nonexistent"}); err == nil {
		t.Error("--target cuda on a staged model: want an error")
	}
}
