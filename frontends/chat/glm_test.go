package chat

import (
	"os"
	"strings"
	"testing"
)

// glmDir holds a synthetic tokenizer of GLM-4.7-Flash's shape with the real GLM-4.7-Flash chat
// template (a copy of testdata/templates/GLM-4.7-Flash.jinja, checked by TestRealTemplateCopies);
// chat_expected.json is transformers' rendering of it (testdata/tokenizer/glm-synthetic/make.py).
const glmDir = "../../testdata/tokenizer/glm-synthetic"

// TestGLMTemplate renders every conversation with the GLM-4.7-Flash template and compares with
// transformers, then checks the GLM shape on the renders: the [gMASK]<sop> prefix, role tokens
// with no newline after them, the <think> / </think> generation prompt and one <|observation|>
// per run of tool results. (The arg_key/arg_value call grammar is checked against transformers
// in TestRealTemplates, conversation call-grammar-two-results.)
func TestGLMTemplate(t *testing.T) {
	tmpl, err := os.ReadFile(glmDir + "/chat_template.jinja")
	if err != nil {
		t.Fatal(err)
	}
	cfg := readJSON[struct {
		ChatTemplate string `json:"chat_template"`
	}](t, glmDir+"/tokenizer_config.json")
	if cfg.ChatTemplate != string(tmpl) {
		t.Fatal("tokenizer_config.json's chat_template differs from chat_template.jinja: rerun make.py")
	}
	convs := map[string]conversation{}
	for _, c := range readJSON[[]conversation](t, "../../testdata/tokenizer/conversations.json") {
		convs[c.Name] = c
	}
	want := readJSON[[]struct {
		Name, Conversation, Text string
		Extra                    map[string]any
	}](t, glmDir+"/chat_expected.json")
	if len(want) < len(convs) {
		t.Fatalf("chat_expected.json has %d renders for %d conversations: rerun make.py", len(want), len(convs))
	}
	same := 0
	for _, w := range want {
		c, ok := convs[w.Conversation]
		if !ok {
			t.Fatalf("%s: no conversation %q", w.Name, w.Conversation)
		}
		got, err := Render(string(tmpl), c.messages(), Options{AddGenerationPrompt: c.AddGenerationPrompt, EnableThinking: c.EnableThinking, Tools: c.Tools, Extra: w.Extra})
		if err != nil {
			t.Errorf("%s: %v", w.Name, err)
			continue
		}
		if got != w.Text {
			t.Errorf("%s: rendering differs from transformers\n got: %q\nwant: %q", w.Name, got, w.Text)
			continue
		}
		same++

		if !strings.HasPrefix(got, "[gMASK]<sop>") {
			t.Errorf("%s: does not start with [gMASK]<sop>: %q", w.Name, got)
		}
		for _, role := range []string{"<|user|>\n", "<|assistant|>\n", "<|observation|>\n"} {
			if strings.Contains(got, role) {
				t.Errorf("%s: newline after a role token (%q)", w.Name, role)
			}
		}
		if c.AddGenerationPrompt {
			suffix := "<|assistant|><think>"
			if c.EnableThinking != nil && !*c.EnableThinking {
				suffix = "<|assistant|></think>"
			}
			if !strings.HasSuffix(got, suffix) {
				t.Errorf("%s: generation prompt: want the suffix %q, got %q", w.Name, suffix, got[max(0, len(got)-40):])
			}
		}
		if strings.Contains(got, "<|observation|><|observation|>") || strings.Contains(got, "</tool_response><|observation|>") {
			t.Errorf("%s: consecutive tool results do not share one <|observation|>", w.Name)
		}
	}
	t.Logf("%d/%d renders byte-identical to transformers", same, len(want))
}
