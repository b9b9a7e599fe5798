package tokenizer

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// glmDir is a synthetic tokenizer of GLM-4.7-Flash's shape (GLM-4's split regex with
// \p{N}{1,3} digit groups, GLM's special tokens); make.py there writes it and HF's ids.
const glmDir = "../../testdata/tokenizer/glm-synthetic"

// TestGLMShape checks that the split regex is the one in the file (GLM's digit groups of up to
// three, where Qwen's splits single digits), that GLM's special tokens match whole, and that
// ids and decodes equal HF tokenizers' on digits, special-token prompts and every rendered chat.
func TestGLMShape(t *testing.T) {
	tok := loadDir(t, glmDir)
	var file struct {
		Added []struct {
			ID      int32  `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		PreTokenizer struct {
			Pretokenizers []struct {
				Pattern struct{ Regex string } `json:"pattern"`
			} `json:"pretokenizers"`
		} `json:"pre_tokenizer"`
	}
	b, err := os.ReadFile(glmDir + "/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	if re := file.PreTokenizer.Pretokenizers[0].Pattern.Regex; !strings.Contains(re, `\p{N}{1,3}`) {
		t.Fatalf("synthetic tokenizer.json regex %q lacks GLM's digit groups", re)
	}
	ids := map[string]int32{}
	for _, a := range file.Added {
		ids[a.Content] = a.ID
	}
	for _, s := range []string{"[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>", "<think>", "</think>"} {
		want, ok := ids[s]
		if !ok {
			t.Fatalf("%s missing from the synthetic tokenizer.json", s)
		}
		if got, ok := tok.TokenID(s); !ok || got != want {
			t.Errorf("TokenID(%q) = %d, %v; want %d", s, got, ok, want)
		}
		if !tok.IsSpecial(want) {
			t.Errorf("%s is not special", s)
		}
		// Glued to text on both sides, it is still one token.
		if got := tok.Encode("x" + s + "y"); len(got) != 3 || got[1] != want {
			t.Errorf("Encode(x%sy) = %v, want the token %d between x and y", s, got, want)
		}
	}

	type line struct {
		TextIn string  `json:"text_in"`
		IDs    []int32 `json:"ids"`
		Text   string  `json:"text"`
		Skip   string  `json:"skip"`
	}
	want := readJSONL[line](t, glmDir+"/expected.jsonl")
	if len(want) < 40 {
		t.Fatalf("expected.jsonl has %d lines: rerun make.py", len(want))
	}
	same := 0
	for i, w := range want {
		if d := cmp.Diff(tok.Encode(w.TextIn), w.IDs, cmpopts.EquateEmpty()); d != "" {
			t.Errorf("line %d %q: ids (-got +want):\n%s", i+1, short(w.TextIn), d)
		} else {
			same++
		}
		if g := tok.Decode(w.IDs, false); g != w.Text {
			t.Errorf("line %d: Decode = %q, HF %q", i+1, g, w.Text)
		}
		if g := tok.Decode(w.IDs, true); g != w.Skip {
			t.Errorf("line %d: Decode(skip special) = %q, HF %q", i+1, g, w.Skip)
		}
	}
	t.Logf("%d/%d texts tokenized identically to HF tokenizers", same, len(want))

	// The same digits split Qwen's way (one digit a piece) could not use the 3-digit merges:
	// guard that the synthetic vocabulary makes the difference visible.
	if got := tok.Encode("123456"); len(got) != 2 {
		t.Errorf("Encode(123456) = %v: want two 3-digit tokens", got)
	}
}
