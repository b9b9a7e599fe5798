package layers

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// platforms are those whose build tags choose different files in the
// tree (mmap, the CPU kernels); the imports of all of them are checked.
var platforms = [][2]string{
	{"linux", "amd64"}, {"linux", "arm64"}, {"darwin", "arm64"}, {"windows", "amd64"},
}

// TestLayers fails for every package that depends on one a Rule forbids it,
// naming the chain of imports and the rule's reason. Of a chain that goes
// on through forbidden packages only the first is named.
func TestLayers(t *testing.T) {
	g := readGraph(t)
	for _, p := range g.pkgs() {
		deps := g.deps(p)
		for _, r := range Rules {
			if !r.applies(p) {
				continue
			}
			bad := func(d string) bool { return d != p && r.forbids(d) && !excepted(Exceptions, p, d) }
			for _, d := range deps.order {
				if !bad(d) || bad(deps.via[d]) {
					continue
				}
				t.Errorf("%s depends on %s (%s): %s must not depend on %s: %s",
					p, d, deps.chain(p, d), r.From, strings.Join(r.Forbid, ", "), r.Why)
			}
		}
	}
}

// TestRulesCurrent fails when a rule matches no package (a move left it
// checking nothing) or an exception is no longer needed.
func TestRulesCurrent(t *testing.T) {
	g := readGraph(t)
	for _, r := range Rules {
		if !slices.ContainsFunc(g.pkgs(), r.applies) {
			t.Errorf("rule for %s matches no package", r.From)
		}
	}
	for _, e := range Exceptions {
		if _, ok := g.imports[e.From]; !ok {
			t.Errorf("exception %s -> %s: no package %s", e.From, e.To, e.From)
			continue
		}
		deps := g.deps(e.From)
		if !slices.Contains(deps.order, e.To) {
			t.Errorf("exception %s -> %s is no longer needed: remove it from internal/layers.Exceptions and docs/design.md (Layers)", e.From, e.To)
		}
		if !slices.ContainsFunc(Rules, func(r Rule) bool { return r.applies(e.From) && r.forbids(e.To) }) {
			t.Errorf("exception %s -> %s: no rule forbids it", e.From, e.To)
		}
	}
}

// TestRuleCatchesImport checks the checker on a made-up graph: a package
// that imports one its rule forbids is found, through a chain, and an
// exception covers only its own edge.
func TestRuleCatchesImport(t *testing.T) {
	g := &graph{imports: map[string][]string{
		"runtime/kvcache": {"runtime/x"},
		"runtime/x":       {"pio"},
		"pio":             nil,
		"runtime/cuda":    {"codegen/cuda"},
		"codegen/cuda":    {"ir"},
		"ir":              nil,
	}}
	deps := g.deps("runtime/kvcache")
	if !slices.Contains(deps.order, "pio") {
		t.Fatalf("deps of runtime/kvcache = %v, want pio among them", deps.order)
	}
	if got, want := deps.chain("runtime/kvcache", "pio"), "runtime/kvcache -> runtime/x -> pio"; got != want {
		t.Errorf("chain = %q, want %q", got, want)
	}
	var runtimeRule Rule
	for _, r := range Rules {
		if r.From == "runtime/..." {
			runtimeRule = r
		}
	}
	if !runtimeRule.applies("runtime/kvcache") || !runtimeRule.forbids("pio") {
		t.Errorf("the runtime/... rule does not forbid runtime/kvcache -> pio")
	}
	exs := []Exception{{From: "runtime/cuda", To: "codegen/cuda"}}
	if !excepted(exs, "runtime/cuda", "codegen/cuda") || excepted(exs, "runtime/kvcache", "codegen/cuda") || excepted(exs, "runtime/cuda", "ir") {
		t.Errorf("the exception runtime/cuda -> codegen/cuda covers the wrong edges")
	}
}

// graph is the module's packages and their non-test imports within the
// module, as paths relative to it.
type graph struct {
	imports map[string][]string
}

func (g *graph) pkgs() []string {
	ps := make([]string, 0, len(g.imports))
	for p := range g.imports {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// depSet is what one package depends on, in breadth-first order, with the
// importer through which each was first reached.
type depSet struct {
	order []string
	via   map[string]string
}

func (g *graph) deps(p string) depSet {
	s := depSet{via: map[string]string{p: ""}}
	queue := []string{p}
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		for _, d := range g.imports[q] {
			if _, seen := s.via[d]; seen {
				continue
			}
			s.via[d] = q
			s.order = append(s.order, d)
			queue = append(queue, d)
		}
	}
	return s
}

// chain is the shortest import chain from p to d: "p -> a -> d".
func (s depSet) chain(p, d string) string {
	c := []string{d}
	for q := s.via[d]; q != "" && q != p; q = s.via[q] {
		c = append(c, q)
	}
	c = append(c, p)
	slices.Reverse(c)
	return strings.Join(c, " -> ")
}

func match(pattern, p string) bool {
	if pattern == "..." {
		return true
	}
	if dir, ok := strings.CutSuffix(pattern, "/..."); ok {
		return p == dir || strings.HasPrefix(p, dir+"/")
	}
	return p == pattern
}

func matchAny(patterns []string, p string) bool {
	return slices.ContainsFunc(patterns, func(pat string) bool { return match(pat, p) })
}

func (r Rule) applies(p string) bool { return match(r.From, p) && !matchAny(r.Unless, p) }

func (r Rule) forbids(d string) bool { return matchAny(r.Forbid, d) && !matchAny(r.Allow, d) }

func excepted(exs []Exception, p, d string) bool {
	return slices.ContainsFunc(exs, func(e Exception) bool { return e.From == p && e.To == d })
}

// readGraph reads every package of the module as `go list ./...` finds
// them (skipping testdata and directories starting with . or _), with the
// union of their imports over platforms.
func readGraph(t *testing.T) *graph {
	t.Helper()
	root, module := moduleRoot(t)
	g := &graph{imports: map[string][]string{}}
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() {
			return nil
		}
		if path != root {
			name := e.Name()
			if name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // another module
			}
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		found := false
		var imports []string
		for _, pl := range platforms {
			ctx := build.Default
			ctx.GOOS, ctx.GOARCH = pl[0], pl[1]
			bp, err := ctx.ImportDir(path, 0)
			if err != nil {
				var none *build.NoGoError
				if errors.As(err, &none) {
					continue
				}
				return fmt.Errorf("%s (%s/%s): %w", rel, pl[0], pl[1], err)
			}
			found = true
			for _, imp := range bp.Imports {
				if d, ok := strings.CutPrefix(imp, module+"/"); ok && !slices.Contains(imports, d) {
					imports = append(imports, d)
				}
			}
		}
		if found {
			slices.Sort(imports)
			g.imports[rel] = imports
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.imports) == 0 {
		t.Fatalf("no packages under %s", root)
	}
	return g
}

// moduleRoot finds go.mod above the working directory and reads the
// module's path from it.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(m), `"`)
				}
			}
			t.Fatalf("%s/go.mod: no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
