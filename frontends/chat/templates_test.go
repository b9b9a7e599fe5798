package chat

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// templatesDir holds the chat templates published with the models (copied from llama.cpp's
// models/templates/, see its README.md), the conversations only they are rendered with, and
// transformers' renderings of both conversation sets (make_expected.py there).
const templatesDir = "../../testdata/templates"

// modelTemplates is the template each model of `pioc build` ships with (its checkpoint's
// chat_template), by registry name, with the file's sha256 as published.
var modelTemplates = []struct{ model, file, sha256 string }{
	{"qwen3-coder-30b-a3b", "Qwen3-Coder.jinja", "d287fb2edf144207f868ae1b282755dc19db2a3f1c5b3a3d57e9e5abffa98392"},
	{"qwen3-coder-next", "Qwen3-Coder.jinja", "d287fb2edf144207f868ae1b282755dc19db2a3f1c5b3a3d57e9e5abffa98392"},
	{"glm-4.7-flash", "GLM-4.7-Flash.jinja", "d63ad536c3c81880043e22ec7fd08db42b4d8fb7c89c7138bc562bfa25281375"},
	{"qwen3-0.6b", "Qwen-Qwen3-0.6B.jinja", "87a2728cb8dc9fe424d624542f6060ec05a1d285ebbec578bb078900e33396b5"},
}

// realTemplate reads a template of templatesDir and checks it is the published file.
func realTemplate(t *testing.T, file, sum string) string {
	t.Helper()
	b, err := os.ReadFile(templatesDir + "/" + file)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
		t.Fatalf("%s: sha256 %x, want %s (the published file)", file, h, sum)
	}
	return string(b)
}

// allConversations is testdata/tokenizer/conversations.json and testdata/templates/conversations.json
// by name.
func allConversations(t *testing.T) map[string]conversation {
	t.Helper()
	convs := map[string]conversation{}
	for _, path := range []string{"../../testdata/tokenizer/conversations.json", templatesDir + "/conversations.json"} {
		for _, c := range readJSON[[]conversation](t, path) {
			if _, dup := convs[c.Name]; dup {
				t.Fatalf("%s: conversation %q appears twice", path, c.Name)
			}
			convs[c.Name] = c
		}
	}
	return convs
}

// rendering is one record of testdata/templates/expected.json.
type rendering struct {
	Template            string         `json:"template"`
	Conversation        string         `json:"conversation"`
	AddGenerationPrompt bool           `json:"add_generation_prompt"`
	Extra               map[string]any `json:"extra"`
	Text                string         `json:"text"` // "ERROR: message" where transformers raises
}

// TestRealTemplates renders every conversation with the real chat template of each model
// (add_generation_prompt both ways, enable_thinking as the case sets it, GLM's clear_thinking)
// and compares byte for byte with transformers' rendering. The conversations' tools have
// parameters, nested schemas and tool call arguments in an order that a sorted or random one
// would change, which Qwen3-Coder's template iterates (properties|items, for key in dict) and
// GLM's (arguments.items()). Where transformers raises, Render must return an error.
func TestRealTemplates(t *testing.T) {
	convs := allConversations(t)
	want := readJSON[[]rendering](t, templatesDir+"/expected.json")
	byTemplate := map[string][]rendering{}
	for _, w := range want {
		if _, ok := convs[w.Conversation]; !ok {
			t.Fatalf("expected.json: no conversation %q: rerun make_expected.py", w.Conversation)
		}
		byTemplate[w.Template] = append(byTemplate[w.Template], w)
	}
	for _, m := range modelTemplates {
		t.Run(m.model, func(t *testing.T) {
			tmpl := realTemplate(t, m.file, m.sha256)
			renders := byTemplate[m.file]
			if len(renders) < 2*len(convs) {
				t.Fatalf("expected.json has %d renders of %s for %d conversations: rerun make_expected.py", len(renders), m.file, len(convs))
			}
			same := 0
			for _, w := range renders {
				c := convs[w.Conversation]
				name := w.Conversation
				if !w.AddGenerationPrompt {
					name += "/no-generation-prompt"
				}
				for k, v := range w.Extra {
					name += "/" + k + "=" + strings.ToLower(pyStr(exec.AsValue(v)))
				}
				got, err := Render(tmpl, c.messages(), Options{AddGenerationPrompt: w.AddGenerationPrompt, EnableThinking: c.EnableThinking, Tools: c.Tools, Extra: w.Extra})
				if msg, raises := strings.CutPrefix(w.Text, "ERROR: "); raises {
					if err == nil {
						t.Errorf("%s: rendered %q; transformers raises %q", name, got, msg)
					} else {
						same++
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if got != w.Text {
					t.Errorf("%s: rendering differs from transformers' %s", name, firstDiff(got, w.Text))
					continue
				}
				same++
			}
			t.Logf("%s: %d/%d renders byte-identical to transformers' (or failing where it does)", m.file, same, len(renders))
		})
	}
}

// TestRealTemplateCopies: the Qwen3 template the tiny tokenizer carries and the GLM one of
// glm-synthetic/ are the published files of testdata/templates.
func TestRealTemplateCopies(t *testing.T) {
	files := map[string]string{}
	for _, m := range modelTemplates {
		files[m.file] = realTemplate(t, m.file, m.sha256)
	}
	if qwen3 := qwen3Template(t); qwen3 != files["Qwen-Qwen3-0.6B.jinja"] {
		t.Error("testdata/tokenizer/tiny's chat template is not Qwen-Qwen3-0.6B.jinja")
	}
	glm, err := os.ReadFile(glmDir + "/chat_template.jinja")
	if err != nil {
		t.Fatal(err)
	}
	if string(glm) != files["GLM-4.7-Flash.jinja"] {
		t.Error("testdata/tokenizer/glm-synthetic/chat_template.jinja is not GLM-4.7-Flash.jinja: rerun glm-synthetic/make.py")
	}
}

// TestRenderDeterministic renders a request whose tool has many parameters, and whose tool call
// has many arguments, repeatedly: Go's map order is random, so any map left in the path shows
// here as a different text, and as two identical requests missing each other's prefix cache.
func TestRenderDeterministic(t *testing.T) {
	c := allConversations(t)["tool-calls-multikey"]
	tmpl := realTemplate(t, modelTemplates[0].file, modelTemplates[0].sha256)
	first, err := Render(tmpl, c.messages(), Options{AddGenerationPrompt: true, Tools: c.Tools})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		got, err := Render(tmpl, c.messages(), Options{AddGenerationPrompt: true, Tools: c.Tools})
		if err != nil || got != first {
			t.Fatalf("render %d differs from the first (err %v)", i+2, err)
		}
	}
}

// firstDiff shows where got first differs from want, with some context.
func firstDiff(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(0, i-120)
	return fmt.Sprintf("at byte %d of %d (want %d):\n got: %q\nwant: %q", i, len(got), len(want), got[from:min(len(got), i+120)], want[from:min(len(want), i+120)])
}
