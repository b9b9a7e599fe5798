package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/internal/golden"
)

// --dump-ir shows each fusion happening on Qwen3, and --no-fuse builds an
// engine whose plan has none of the fused ops.
func TestDumpIRAndNoFuse(t *testing.T) {
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "qwen3-a")
	tmp := t.TempDir()
	dumps := filepath.Join(tmp, "ir")
	eng := filepath.Join(tmp, "fused.pio")
	if out, err := run(t, "build", src, "-o", eng, "--check", "--dump-ir", dumps, "-q"); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for pass, want := range map[string]string{
		"fuse-sibling-matmuls": "q_proj.weight+k_proj.weight+v_proj.weight",
		"fuse-swiglu":          `act="swiglu"`,
		"fuse-norm-matmul":     "norm=1",
		"fuse-attn-input":      "qkv_attention(",
		"fuse-residual":        "residual=1",
	} {
		files, _ := filepath.Glob(filepath.Join(dumps, "*-"+pass+".ir"))
		if len(files) != 1 {
			t.Fatalf("dumps after %s: %v", pass, files)
		}
		file := filepath.Base(files[0])
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", file, want)
		}
	}
	out, err := run(t, "inspect", eng, "--plan")
	if err != nil || !strings.Contains(out, "qkv_attention(") {
		t.Errorf("fused plan: %v\n%s", err, out)
	}
	plain := filepath.Join(tmp, "plain.pio")
	if out, err := run(t, "build", src, "-o", plain, "--no-fuse", "-q"); err != nil {
		t.Fatalf("build --no-fuse: %v\n%s", err, out)
	}
	out, err = run(t, "inspect", plain, "--plan")
	if err != nil || strings.Contains(out, "fused_matmul") || !strings.Contains(out, " attention(") {
		t.Errorf("unfused plan: %v\n%s", err, out)
	}
}
