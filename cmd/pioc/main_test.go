package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inference-pio/pio/cmd/internal/cliargs"
	"github.com/inference-pio/pio/internal/golden"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out, errOut bytes.Buffer
	app.Writer, app.ErrWriter = &out, &errOut
	full, err := cliargs.Reorder(app, append([]string{"pioc"}, args...))
	if err != nil {
		return "", err
	}
	err = app.Run(full)
	return out.String() + errOut.String(), err
}

func TestBuildInspectList(t *testing.T) {
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "qwen3-a")
	eng := filepath.Join(t.TempDir(), "e.pio")
	// Flags after the positional argument, as users write them.
	out, err := run(t, "build", dir, "-o", eng, "--dtype", "f32", "--check")
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if _, err := os.Stat(eng); err != nil {
		t.Fatalf("-o was ignored: %v\n%s", err, out)
	}
	out, err = run(t, "inspect", eng, "--plan", "--verify")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Qwen3ForCausalLM", "qwen3-a", "checksums  ok", "attention("} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "build", dir, "-o", eng, "--dtype", "f8"); err == nil || !strings.Contains(err.Error(), "--dtype") {
		t.Errorf("bad --dtype: got %v", err)
	}
	if _, err := run(t, "build", dir, "--bogus"); err == nil || !strings.Contains(err.Error(), "unknown flag") {
		t.Errorf("unknown flag: got %v", err)
	}
	t.Setenv("HF_HOME", t.TempDir())
	out, err = run(t, "list")
	if err != nil || !strings.Contains(out, "glm-4.7-flash") || !strings.Contains(out, "qwen3-0.6b") {
		t.Errorf("list: %v\n%s", err, out)
	}
	out, err = run(t, "passes")
	if err != nil || !strings.Contains(out, "dce") {
		t.Errorf("passes: %v\n%s", err, out)
	}
}

func TestInspectRejectsCorruptEngine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.pio")
	os.WriteFile(p, []byte("PIOENGN\x00 this is not an engine"), 0o644)
	if _, err := run(t, "inspect", p); err == nil || !strings.Contains(err.Error(), "engine") {
		t.Errorf("got %v", err)
	}
}
