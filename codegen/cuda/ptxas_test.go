package cuda

// ptxas -v's register and spill report, for the tests that check it.

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// PtxasReport compiles src to a cubin for one sm_ arch with the flags of
// every compilation and returns ptxas -v's report.
func PtxasReport(t *testing.T, nvcc, src, arch string) string {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "m.cu")
	if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	gen := "-gencode=arch=compute_" + strings.TrimPrefix(arch, "sm_") + ",code=" + arch
	out, err := exec.Command(nvcc, append([]string{"-cubin", gen, "-Xptxas", "-v", "-o", filepath.Join(dir, "m.cubin"), in}, nvccFlags...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nvcc -Xptxas -v %s: %v\n%s", arch, err, out)
	}
	return string(out)
}

// ptxasEntry is ptxas -v's report on one kernel.
type ptxasEntry struct {
	name, report string
	regs         int // -1 where the report names no register count
}

// spills says whether the kernel spills registers.
func (e ptxasEntry) spills() bool {
	return !strings.Contains(e.report, " 0 bytes spill stores") || !strings.Contains(e.report, " 0 bytes spill loads")
}

var usedRegs = regexp.MustCompile(`Used (\d+) registers`)

// ptxasEntries are the reports of out on the kernels whose names start
// with prefix.
func ptxasEntries(out, prefix string) []ptxasEntry {
	var es []ptxasEntry
	for _, fn := range strings.Split(out, "Compiling entry function")[1:] {
		name := strings.Trim(strings.Fields(fn)[0], "'")
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		e := ptxasEntry{name: name, report: fn, regs: -1}
		if r := usedRegs.FindStringSubmatch(fn); r != nil {
			e.regs, _ = strconv.Atoi(r[1])
		}
		es = append(es, e)
	}
	return es
}

// checkRegisters: none of es spills, and each needs at most maxRegs
// registers; it logs each count.
func checkRegisters(t *testing.T, es []ptxasEntry, maxRegs int) {
	t.Helper()
	for _, e := range es {
		if e.spills() {
			t.Errorf("%s spills:\n%s", e.name, e.report)
		}
		if e.regs < 0 {
			t.Errorf("%s: no register count", e.name)
			continue
		}
		if e.regs > maxRegs {
			t.Errorf("%s: %d registers", e.name, e.regs)
		}
		t.Logf("%s: %d registers", e.name, e.regs)
	}
}
