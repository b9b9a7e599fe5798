package hf

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// setCacheEnv clears every variable CacheDir reads, then sets env.
func setCacheEnv(t *testing.T, env map[string]string) {
	for _, k := range []string{"HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"} {
		t.Setenv(k, env[k])
	}
}

func TestCacheDir(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HF_HUB_CACHE": "/c", "HF_HOME": "/h", "XDG_CACHE_HOME": "/x", "HOME": "/home/u"}, "/c"},
		{map[string]string{"HF_HOME": "/h", "XDG_CACHE_HOME": "/x", "HOME": "/home/u"}, "/h/hub"},
		{map[string]string{"XDG_CACHE_HOME": "/x", "HOME": "/home/u"}, "/x/huggingface/hub"},
		{map[string]string{"HOME": "/home/u"}, "/home/u/.cache/huggingface/hub"},
	}
	for _, tt := range tests {
		setCacheEnv(t, tt.env)
		if got := CacheDir(); got != filepath.FromSlash(tt.want) {
			t.Errorf("CacheDir() with %v = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mkdirs creates each directory under root.
func mkdirs(t *testing.T, root string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindSnapshot(t *testing.T) {
	const repo = "models--Qwen--Qwen3-0.6B"
	old, recent := time.Now().Add(-time.Hour), time.Now()
	tests := []struct {
		name  string
		setup func(t *testing.T, hub string)
		want  string // snapshot dir relative to the repo dir; "" for an error
	}{
		{
			"refs/main", func(t *testing.T, hub string) {
				mkdirs(t, hub, repo+"/snapshots/abc123", repo+"/snapshots/def456", repo+"/refs")
				must(t, os.WriteFile(filepath.Join(hub, repo, "refs/main"), []byte("abc123\n"), 0o644))
				must(t, os.Chtimes(filepath.Join(hub, repo, "snapshots/abc123"), old, old))
			},
			"snapshots/abc123",
		},
		{
			"single snapshot", func(t *testing.T, hub string) {
				mkdirs(t, hub, repo+"/snapshots/abc123")
			},
			"snapshots/abc123",
		},
		{
			"refs/main names a missing snapshot", func(t *testing.T, hub string) {
				mkdirs(t, hub, repo+"/snapshots/abc123", repo+"/refs")
				must(t, os.WriteFile(filepath.Join(hub, repo, "refs/main"), []byte("fff000"), 0o644))
			},
			"snapshots/abc123",
		},
		{
			"most recent of several", func(t *testing.T, hub string) {
				mkdirs(t, hub, repo+"/snapshots/aaa", repo+"/snapshots/bbb", repo+"/snapshots/ccc")
				must(t, os.Chtimes(filepath.Join(hub, repo, "snapshots/aaa"), old, old))
				must(t, os.Chtimes(filepath.Join(hub, repo, "snapshots/bbb"), recent, recent))
				must(t, os.Chtimes(filepath.Join(hub, repo, "snapshots/ccc"), old, old))
			},
			"snapshots/bbb",
		},
		{"missing repo", func(t *testing.T, hub string) {}, ""},
		{"no snapshots", func(t *testing.T, hub string) { mkdirs(t, hub, repo+"/snapshots", repo+"/blobs") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			setCacheEnv(t, map[string]string{"HF_HOME": home})
			hub := filepath.Join(home, "hub")
			tt.setup(t, hub)
			got, err := FindSnapshot("Qwen/Qwen3-0.6B")
			if tt.want == "" {
				snaps := filepath.Join(hub, repo, "snapshots")
				if err == nil {
					t.Fatalf("FindSnapshot = %q, want an error", got)
				}
				for _, s := range []string{"Qwen/Qwen3-0.6B", snaps, "nothing is downloaded", "huggingface-cli download Qwen/Qwen3-0.6B"} {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if want := filepath.Join(hub, repo, tt.want); err != nil || got != want {
				t.Errorf("FindSnapshot = %q, %v; want %q", got, err, want)
			}
		})
	}
}

func TestFindSnapshotBadRepoID(t *testing.T) {
	setCacheEnv(t, map[string]string{"HF_HOME": t.TempDir()})
	for _, id := range []string{"", "Qwen", "Qwen/", "/Qwen3", "a/b/c", "../x", "a/..", `a\b/c`} {
		if _, err := FindSnapshot(id); err == nil || !strings.Contains(err.Error(), "invalid Hugging Face repo id") {
			t.Errorf("FindSnapshot(%q): err = %v, want an invalid repo id error", id, err)
		}
	}
}

func TestResolveCheckpointDir(t *testing.T) {
	home := t.TempDir()
	setCacheEnv(t, map[string]string{"HF_HOME": home})
	snap := filepath.Join(home, "hub", "models--org--m", "snapshots", "r1")
	mkdirs(t, snap, ".")
	local := t.TempDir()
	missing := filepath.Join(local, "missing")
	tests := []struct {
		arg, repo, want, wantErr string
	}{
		{arg: local, repo: "org/m", want: local},
		{arg: local, want: local},
		{arg: missing, repo: "org/m", want: snap},
		{arg: "", repo: "org/m", want: snap},
		{arg: missing, wantErr: missing + ": not a directory"},
		{wantErr: "no checkpoint given"},
		{arg: missing, repo: "org/other", wantErr: "org/other is not in the Hugging Face cache"},
	}
	for _, tt := range tests {
		got, err := ResolveCheckpointDir(tt.arg, tt.repo)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ResolveCheckpointDir(%q, %q) = %q, %v; want an error containing %q", tt.arg, tt.repo, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ResolveCheckpointDir(%q, %q) = %q, %v; want %q", tt.arg, tt.repo, got, err, tt.want)
		}
	}
}
