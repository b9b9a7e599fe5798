package main

import (
	"bytes"
	"fmt"
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
	for _, want := range []string{"Qwen3ForCausalLM", "qwen3-a", "checksums  ok", "attention(", "kv cache   f32, "} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "build", dir, "-o", eng, "--dtype", "f8"); err == nil || !strings.Contains(err.Error(), "--dtype") {
		t.Errorf("bad --dtype: got %v", err)
	}
	if _, err := run(t, "build", dir, "-o", eng, "--kv-dtype", "bad"); err == nil || !strings.Contains(err.Error(), "--kv-dtype must be auto, f32 or bf16") {
		t.Errorf("bad --kv-dtype: got %v", err)
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
	if err != nil || !strings.Contains(out, " 1  cse ") || !strings.Contains(out, "fuse-sibling-matmuls fusion ") || !strings.Contains(out, "dce ") {
		t.Errorf("passes: %v\n%s", err, out)
	}
}

// --kv-dtype reaches the engine: the default for a bf16 engine is a bf16
// cache, half the bytes per position of --kv-dtype f32.
func TestKVDTypeFlag(t *testing.T) {
	root, err := golden.Root()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "qwen3-a")
	perPos := map[string]int{}
	for _, c := range []struct{ flags, want string }{{"", "bf16"}, {"--kv-dtype=f32", "f32"}, {"--kv-dtype=bf16", "bf16"}} {
		eng := filepath.Join(t.TempDir(), "e.pio")
		args := []string{"build", dir, "-o", eng, "-q"}
		if c.flags != "" {
			args = append(args, c.flags)
		}
		if out, err := run(t, args...); err != nil {
			t.Fatalf("build %s: %v\n%s", c.flags, err, out)
		}
		out, err := run(t, "inspect", eng)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		var dt string
		i := strings.Index(out, "kv cache   ")
		if i < 0 {
			t.Fatalf("inspect output lacks the kv cache line:\n%s", out)
		}
		if _, err := fmt.Sscanf(out[i:], "kv cache   %s %d B/position", &dt, &n); err != nil || dt != c.want+"," {
			t.Errorf("build %q: kv cache line %q (%v), want %s", c.flags, strings.SplitN(out[i:], "\n", 2)[0], err, c.want)
		}
		perPos[c.want] = n
	}
	if perPos["f32"] == 0 || perPos["f32"] != 2*perPos["bf16"] {
		t.Errorf("bytes per position: %v, want f32 = 2 × bf16", perPos)
	}
}

func TestInspectRejectsCorruptEngine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.pio")
	os.WriteFile(p, []byte("PIOENGN\x00 this is not an engine"), 0o644)
	if _, err := run(t, "inspect", p); err == nil || !strings.Contains(err.Error(), "engine") {
		t.Errorf("got %v", err)
	}
}
