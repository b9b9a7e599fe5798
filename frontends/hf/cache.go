package hf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// CacheDir returns the Hugging Face hub cache directory, as huggingface_hub
// resolves it: $HF_HUB_CACHE, else $HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub. It returns
// "" when none of these can be determined (no variable set and no home
// directory).
func CacheDir() string {
	if d := os.Getenv("HF_HUB_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("HF_HOME"); d != "" {
		return filepath.Join(d, "hub")
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "huggingface", "hub")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "huggingface", "hub")
}

// FindSnapshot returns the snapshot directory of the model repoID ("ORG/NAME")
// in the local Hugging Face cache: CacheDir()/models--ORG--NAME/snapshots/REV,
// where REV is the revision refs/main names when that snapshot exists, else
// the only snapshot, else the most recently modified one. Nothing is ever
// downloaded: a repository missing from the cache is an error naming the
// path that was looked at.
func FindSnapshot(repoID string) (string, error) {
	org, name, ok := strings.Cut(repoID, "/")
	if !ok || org == "" || name == "" || strings.Contains(name, "/") ||
		strings.Contains(repoID, "..") || strings.ContainsAny(repoID, `\`) {
		return "", fmt.Errorf("invalid Hugging Face repo id %q: want ORG/NAME", repoID)
	}
	cache := CacheDir()
	if cache == "" {
		return "", fmt.Errorf("%s: cannot locate the Hugging Face cache: set HF_HOME or HF_HUB_CACHE, or pass a checkpoint directory", repoID)
	}
	repoDir := filepath.Join(cache, "models--"+org+"--"+name)
	snapDir := filepath.Join(repoDir, "snapshots")
	notFound := func(what string) error {
		return fmt.Errorf("%s is not in the Hugging Face cache: %s (nothing is downloaded; run `huggingface-cli download %s` or pass a checkpoint directory)",
			repoID, what, repoID)
	}
	if ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main")); err == nil {
		rev := strings.TrimSpace(string(ref))
		if rev != "" && filepath.IsLocal(rev) && !strings.ContainsAny(rev, `/\`) {
			if dir := filepath.Join(snapDir, rev); isDir(dir) {
				return dir, nil
			}
		}
	}
	entries, err := os.ReadDir(snapDir)
	if err != nil {
		return "", notFound("no directory " + snapDir)
	}
	var best os.FileInfo
	for _, e := range entries {
		info, err := os.Stat(filepath.Join(snapDir, e.Name()))
		if err != nil || !info.IsDir() {
			continue
		}
		if best == nil || info.ModTime().After(best.ModTime()) ||
			info.ModTime().Equal(best.ModTime()) && info.Name() > best.Name() {
			best = info
		}
	}
	if best == nil {
		return "", notFound("no snapshot in " + snapDir)
	}
	return filepath.Join(snapDir, best.Name()), nil
}

// ResolveCheckpointDir picks the checkpoint directory a command works on:
// arg when it is an existing directory, else the cached snapshot of repoID
// when repoID is not empty (see FindSnapshot).
func ResolveCheckpointDir(arg, repoID string) (string, error) {
	if arg != "" && isDir(arg) {
		return arg, nil
	}
	if repoID != "" {
		return FindSnapshot(repoID)
	}
	if arg == "" {
		return "", errors.New("no checkpoint given: pass a checkpoint directory or a Hugging Face repo id")
	}
	return "", fmt.Errorf("checkpoint %s: not a directory, and no Hugging Face repo id given", arg)
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
