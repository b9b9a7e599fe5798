package abi

import "testing"

func TestSelectImage(t *testing.T) {
	imgs := []Image{{Arch: "sm_80"}, {Arch: "sm_89"}, {Arch: "sm_90a"}, {Arch: "compute_90"}}
	for _, c := range []struct {
		major, minor int
		want         string
	}{
		{8, 0, "sm_80"},       // A100
		{8, 6, "sm_80"},       // A10, RTX 30xx: the sm_80 cubin runs on later minors
		{8, 7, "sm_80"},       // Orin
		{8, 9, "sm_89"},       // L4, L40
		{9, 0, "sm_90a"},      // H100, H200
		{10, 0, "compute_90"}, // B200: PTX JIT
		{12, 0, "compute_90"}, // RTX 50xx
		{7, 5, ""},            // T4: nothing fits
	} {
		i, ok := SelectImage(imgs, c.major, c.minor)
		got := ""
		if ok {
			got = imgs[i].Arch
		}
		if got != c.want {
			t.Errorf("cc %d.%d: got %q, want %q", c.major, c.minor, got, c.want)
		}
	}
	// Without the arch-specific cubin, Hopper falls back to PTX.
	if i, ok := SelectImage([]Image{{Arch: "sm_80"}, {Arch: "compute_90"}}, 9, 0); !ok || i != 1 {
		t.Errorf("9.0 without sm_90a: %d %v", i, ok)
	}
	if !imgs[3].IsPTX() || imgs[2].IsPTX() {
		t.Error("IsPTX wrong")
	}
}

func TestLaunchRuns(t *testing.T) {
	warp := Launch{Rows: Expr{S: 1}, MaxRows: 16}
	tile := Launch{MinRows: 17}
	dec := Launch{Mode: Decode}
	pre := Launch{Mode: Prefill}
	for _, c := range []struct {
		l      Launch
		t, s   int
		decode bool
		want   bool
	}{
		{warp, 100, 4, false, true}, // rows are S
		{warp, 4, 17, false, false},
		{tile, 17, 1, false, true}, // rows default to T
		{tile, 16, 1, false, false},
		{dec, 8, 8, true, true},
		{dec, 8, 1, false, false},
		{pre, 8, 1, false, true},
		{pre, 8, 8, true, false},
	} {
		if got := c.l.Runs(c.t, c.s, c.decode); got != c.want {
			t.Errorf("%+v T=%d S=%d decode=%v: %v", c.l, c.t, c.s, c.decode, got)
		}
	}
	if got := (Expr{T: 64, S: 2, Tiles: 1, Splits: 3, Fixed: 5, Div: 256}).Eval(10, 3, 7, 2); got != (640+6+7+6+5+255)/256 {
		t.Errorf("Eval = %d", got)
	}
}

func TestParams(t *testing.T) {
	for _, c := range []struct {
		p       Param
		name    string
		pointer bool
	}{
		{Param{Kind: PArg, Index: 3}, "arg3", true},
		{Param{Kind: PCacheK, Index: 1}, "cache_k", true},
		{Param{Kind: PT}, "T", false},
		{Param{Kind: PSplits}, "splits", false},
		{Param{Kind: PSeqWork}, "seq_work", true},
		{Param{Kind: 99}, "param(99)", true},
	} {
		if got := c.p.String(); got != c.name {
			t.Errorf("%v: String = %q, want %q", c.p.Kind, got, c.name)
		}
		if got := c.p.IsPointer(); got != c.pointer {
			t.Errorf("%s: IsPointer = %v, want %v", c.name, got, c.pointer)
		}
	}
	for k := PArg; k <= PSeqWork; k++ {
		if !k.Known() {
			t.Errorf("kind %d unknown", k)
		}
	}
	if PInvalid.Known() || ParamKind(PSeqWork+1).Known() {
		t.Error("Known accepts an unlisted kind")
	}
}
