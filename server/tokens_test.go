package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"unicode/utf8"

	"github.com/inference-pio/pio/compiler"
	"github.com/inference-pio/pio/frontends/tokenizer"
	"github.com/inference-pio/pio/internal/golden"
	"github.com/inference-pio/pio/ir"
	"github.com/inference-pio/pio/pio"
)

// scriptTok is a generated token: its raw bytes, its text as pio gives it
// (U+FFFD for a partial character), its log-probability and one
// alternative.
type scriptTok struct {
	id     int32
	raw    string
	text   string
	lp     float32
	alt    int32
	altLp  float32
	altRaw string
}

// openAIExample is the start of a completion OpenAI's
// gpt-3.5-turbo-instruct returned for the prompt "天气非常好" with
// logprobs: 1, token by token: 适 and 旅 are each split over two tokens,
// which OpenAI named "bytes:\xe9\x80", "bytes:\x82", ... and gave
// text_offset 5, 6, 6, 7, 8, 9, 10, 10, 11 (characters from the start of
// the prompt; a split character's tokens share its offset).
var openAIExample = []scriptTok{
	{1, "，", "，", -0.8015664, 1, -0.8015664, "，"},
	{2, "\xe9\x80", "\uFFFD", -2.9169734, 20, -2.431496, "我"},
	{3, "\x82", "\uFFFD", -0.0111257555, 3, -0.0111257555, "\x82"},
	{4, "合", "合", -0.053733885, 4, -0.053733885, "合"},
	{5, "出", "出", -0.78531545, 5, -0.78531545, "出"},
	{6, "门", "门", -0.9327129, 6, -0.9327129, "门"},
	{7, "\xe6\x97", "\uFFFD", -1.958352, 21, -1.108056, "游"},
	{8, "\x85", "\uFFFD", -0.000043226137, 8, -0.000043226137, "\x85"},
	{9, "行", "行", -1.355173, 22, -0.3043021, "游"},
}

// tokenScript is an Engine that answers every request with toks, as pio
// would: text held back while a character is incomplete. Its prompt
// tokens (Encode) are 100..103, "天气" "\xe9\x9d" "\x9e" "常好".
type tokenScript struct {
	Engine
	toks []scriptTok
}

var scriptPrompt = map[int32]string{100: "天气", 101: "\xe9\x9d", 102: "\x9e", 103: "常好"}

func (s tokenScript) Encode(string) ([]int32, error) { return []int32{100, 101, 102, 103}, nil }

func (s tokenScript) run(fn func(pio.Chunk)) pio.Result {
	var res pio.Result
	var pending string
	for _, tk := range s.toks {
		lp := pio.Logprob{TokenLogprob: pio.TokenLogprob{Token: tk.id, Text: tk.text, Logprob: tk.lp}}
		altText := tk.altRaw
		if !utf8.ValidString(altText) {
			altText = "\uFFFD"
		}
		lp.Top = []pio.TokenLogprob{{Token: tk.alt, Text: altText, Logprob: tk.altLp}}
		c := pio.Chunk{Tokens: []int32{tk.id}, Logprobs: []pio.Logprob{lp}}
		if pending += tk.raw; utf8.ValidString(pending) {
			c.Text, pending = pending, ""
		}
		res.Text += c.Text
		res.Tokens = append(res.Tokens, tk.id)
		res.Logprobs = append(res.Logprobs, lp)
		if fn != nil {
			fn(c)
		}
	}
	res.FinishReason, res.PromptTokens, res.CompletionTokens = "length", 4, len(s.toks)
	return res
}

func (s tokenScript) GenerateIDs(ctx context.Context, prompt []int32, opt pio.GenerateOptions, fn func(pio.Chunk)) (pio.Result, error) {
	return s.run(fn), nil
}

func (s tokenScript) Chat(ctx context.Context, msgs []pio.Message, opt pio.ChatOptions, fn func(pio.ChatChunk)) (pio.ChatResult, error) {
	res := s.run(func(c pio.Chunk) {
		if fn != nil {
			fn(pio.ChatChunk{Content: c.Text, Tokens: c.Tokens, Logprobs: c.Logprobs})
		}
	})
	out := pio.ChatResult{Result: res}
	out.Role, out.Content = "assistant", res.Text
	return out, nil
}

// byteScript is a tokenScript whose engine gives token bytes (TokenByter).
type byteScript struct{ tokenScript }

func (s byteScript) TokenBytes(id int32) []byte {
	if p, ok := scriptPrompt[id]; ok {
		return []byte(p)
	}
	for _, tk := range s.toks {
		if tk.id == id {
			return []byte(tk.raw)
		}
		if tk.alt == id {
			return []byte(tk.altRaw)
		}
	}
	return nil
}

func byteList(s string) []any {
	out := []any{}
	for i := 0; i < len(s); i++ {
		out = append(out, float64(s[i]))
	}
	return out
}

// TestCompletionLogprobsBytes: completions name a partial-character token
// "bytes:\x.." and give text_offset in characters from the start of the
// prompt (text or token ids), exactly as OpenAI's recorded answer does,
// whole and streamed.
func TestCompletionLogprobsBytes(t *testing.T) {
	url := httptestServer(t, mustNew(t, byteScript{tokenScript{toks: openAIExample}}, Config{ModelName: "m"}))
	wantTokens := []any{"，", `bytes:\xe9\x80`, `bytes:\x82`, "合", "出", "门", `bytes:\xe6\x97`, `bytes:\x85`, "行"}
	wantOffsets := []any{5.0, 6.0, 6.0, 7.0, 8.0, 9.0, 10.0, 10.0, 11.0}
	for _, prompt := range []string{`"天气非常好"`, `[100,101,102,103]`} {
		r := postOK(t, url+"/v1/completions", `{"prompt":`+prompt+`,"logprobs":1}`)
		c := choicesOf(t, r, 1)[0]
		lp := c["logprobs"].(map[string]any)
		if c["text"] != "，适合出门旅行" || !slices.Equal(lp["tokens"].([]any), wantTokens) || !slices.Equal(lp["text_offset"].([]any), wantOffsets) {
			t.Errorf("prompt %s: text %q tokens %q offsets %v, want %q and %v", prompt, c["text"], lp["tokens"], lp["text_offset"], wantTokens, wantOffsets)
		}
		if top := lp["top_logprobs"].([]any); top[1].(map[string]any)["我"] == nil || top[2].(map[string]any)[`bytes:\x82`] == nil {
			t.Errorf("prompt %s: top_logprobs %v", prompt, top)
		}
	}
	var toks, offs []any
	var text string
	for _, ev := range sseEvents(t, url+"/v1/completions", `{"prompt":"天气非常好","logprobs":1,"stream":true}`) {
		var ch struct {
			Choices []struct {
				Text     string `json:"text"`
				Logprobs *struct {
					Tokens     []any `json:"tokens"`
					TextOffset []any `json:"text_offset"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(ev), &ch); err != nil {
			t.Fatal(err)
		}
		for _, c := range ch.Choices {
			text += c.Text
			if c.Logprobs != nil {
				toks, offs = append(toks, c.Logprobs.Tokens...), append(offs, c.Logprobs.TextOffset...)
			}
		}
	}
	if text != "，适合出门旅行" || !slices.Equal(toks, wantTokens) || !slices.Equal(offs, wantOffsets) {
		t.Errorf("streamed: text %q tokens %q offsets %v", text, toks, offs)
	}
}

// TestChatLogprobsBytes: chat logprobs carry every byte of each token —
// the raw bytes of a partial-character token when the engine gives them,
// which put the text back together, the name escaped ("\xe9\x80") — and of
// its alternatives; without token bytes, a token's text's bytes (U+FFFD as
// [239, 191, 189], not [239, 0, 0]).
func TestChatLogprobsBytes(t *testing.T) {
	body := `{"messages":[{"role":"user","content":"天气非常好"}],"logprobs":true,"top_logprobs":1}`
	entries := func(eng Engine) []any {
		url := httptestServer(t, mustNew(t, eng, Config{ModelName: "m"}))
		c := choicesOf(t, postOK(t, url+"/v1/chat/completions", body), 1)[0]
		return c["logprobs"].(map[string]any)["content"].([]any)
	}
	var all []byte
	for i, e := range entries(byteScript{tokenScript{toks: openAIExample}}) {
		m, tk := e.(map[string]any), openAIExample[i]
		want := tk.raw
		if !utf8.ValidString(want) {
			want = ""
			for j := 0; j < len(tk.raw); j++ {
				want += fmt.Sprintf(`\x%02x`, tk.raw[j])
			}
		}
		if m["token"] != want || !slices.Equal(m["bytes"].([]any), byteList(tk.raw)) {
			t.Errorf("token %d: %q %v, want %q %v", i, m["token"], m["bytes"], want, byteList(tk.raw))
		}
		top := m["top_logprobs"].([]any)[0].(map[string]any)
		if !slices.Equal(top["bytes"].([]any), byteList(tk.altRaw)) {
			t.Errorf("token %d: alternative bytes %v, want %v", i, top["bytes"], byteList(tk.altRaw))
		}
		for _, b := range m["bytes"].([]any) {
			all = append(all, byte(b.(float64)))
		}
	}
	if string(all) != "，适合出门旅行" {
		t.Errorf("the tokens' bytes make %q", all)
	}
	for i, e := range entries(tokenScript{toks: openAIExample}) {
		m, tk := e.(map[string]any), openAIExample[i]
		if m["token"] != tk.text || !slices.Equal(m["bytes"].([]any), byteList(tk.text)) {
			t.Errorf("without token bytes, token %d: %q %v, want %q %v", i, m["token"], m["bytes"], tk.text, byteList(tk.text))
		}
	}
}

// multiByteEngine builds the tiny engine with the tokens of its last two
// merges (" tests" and " tiny", which no other merge uses) renamed to the
// byte-level spellings of "\xe4\xbd" (the first two bytes of 你) and 你, and
// those merges dropped: tokens the shape of Qwen3's 8519 and 56568, which
// the synthetic 512-id vocabulary lacks, for logit_bias to force. It
// returns the engine and the two ids.
func multiByteEngine(t *testing.T) (e *pio.Engine, partial, whole int32) {
	t.Helper()
	g, err := golden.Load("qwen3-a")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, f := range []string{"config.json", "generation_config.json", "model.safetensors", "tokenizer_config.json", "tokenizer.json"} {
		b, err := os.ReadFile(filepath.Join(g.Dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "tokenizer.json" {
			b = renameTokens(t, b)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "e.pio")
	if _, err := compiler.Build(compiler.Options{Source: dir, Output: path, DType: ir.F32}); err != nil {
		t.Fatal(err)
	}
	if e, err = pio.Load(path, pio.Options{MaxStepTokens: 32, CacheTokens: 1024}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e, 500, 501
}

// renameTokens rewrites tokenizer.json as multiByteEngine says.
func renameTokens(t *testing.T, tokJSON []byte) []byte {
	t.Helper()
	tok, err := tokenizer.Load(tokJSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]any
	d := json.NewDecoder(bytes.NewReader(tokJSON))
	d.UseNumber()
	if err := d.Decode(&file); err != nil {
		t.Fatal(err)
	}
	model := file["model"].(map[string]any)
	vocab := model["vocab"].(map[string]any)
	name := map[int64]string{} // id -> its byte-level spelling
	for k, v := range vocab {
		id, _ := v.(json.Number).Int64()
		name[id] = k
	}
	ni := tok.Encode("你") // three single-byte tokens
	if len(ni) != 3 {
		t.Fatalf("你 encodes to %v, want three byte tokens", ni)
	}
	spell := map[int64]string{500: name[int64(ni[0])] + name[int64(ni[1])], 501: name[int64(ni[0])] + name[int64(ni[1])] + name[int64(ni[2])]}
	var merges []any
	for _, m := range model["merges"].([]any) {
		pair := m.([]any)
		a, b := pair[0].(string), pair[1].(string)
		if a == name[500] || b == name[500] || a == name[501] || b == name[501] {
			t.Fatalf("merge %q %q uses a token renamed", a, b)
		}
		if a+b != name[500] && a+b != name[501] {
			merges = append(merges, m)
		}
	}
	model["merges"] = merges
	for id, s := range spell {
		delete(vocab, name[id])
		vocab[s] = json.Number(strconv.FormatInt(id, 10))
	}
	out, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLogprobBytesEngine: through a real engine (pio.Engine gives token
// bytes), a token that is part of a character — one byte, or two of 你's
// three — gives its own bytes in logprobs' bytes, named "\xe4\xbd" in chat
// and "bytes:\xe4\xbd" in completions, and a token that is a whole
// multi-byte character its UTF-8 bytes; every alternative's name agrees with
// its bytes; a prompt of token ids counts its characters in text_offset.
func TestLogprobBytesEngine(t *testing.T) {
	e, partial, whole := multiByteEngine(t)
	url := httptestServer(t, mustNew(t, e, Config{ModelName: "m"}))
	if _, ok := any(e).(TokenByter); !ok {
		t.Fatal("*pio.Engine is not a TokenByter")
	}
	oneByte, err := e.Encode("\xe4")
	if err != nil || len(oneByte) != 1 {
		t.Fatalf("encode one byte: %v %v", oneByte, err)
	}
	for _, c := range []struct {
		id          int32
		raw         string
		chat, compl string
	}{
		{oneByte[0], "\xe4", `\xe4`, `bytes:\xe4`},
		{partial, "\xe4\xbd", `\xe4\xbd`, `bytes:\xe4\xbd`},
		{whole, "你", "你", "你"},
	} {
		bias := fmt.Sprintf(`"max_tokens":3,"ignore_eos":true,"temperature":0,"logit_bias":{"%d":100}`, c.id)
		r := postOK(t, url+"/v1/chat/completions", `{"messages":[{"role":"user","content":"你好"}],"logprobs":true,"top_logprobs":5,`+bias+`}`)
		content := choicesOf(t, r, 1)[0]["logprobs"].(map[string]any)["content"].([]any)
		if len(content) != 3 {
			t.Fatalf("%d logprobs entries, want 3", len(content))
		}
		alts := 0
		for _, x := range content {
			m := x.(map[string]any)
			if m["token"] != c.chat || !slices.Equal(m["bytes"].([]any), byteList(c.raw)) {
				t.Errorf("forced token %d: %q %v, want %q %v", c.id, m["token"], m["bytes"], c.chat, byteList(c.raw))
			}
			for _, alt := range m["top_logprobs"].([]any) {
				a := alt.(map[string]any)
				var raw []byte
				for _, b := range a["bytes"].([]any) {
					raw = append(raw, byte(b.(float64)))
				}
				if len(raw) == 0 || a["token"] != chatToken(raw) {
					t.Errorf("alternative %q: bytes %v", a["token"], a["bytes"])
				}
				alts++
			}
		}
		if alts != 15 {
			t.Errorf("%d alternatives, want 15", alts)
		}
		prompt, _ := e.Encode("你好") // six byte tokens: two characters
		ids, _ := json.Marshal(prompt)
		r = postOK(t, url+"/v1/completions", `{"prompt":`+string(ids)+`,"logprobs":0,`+bias+`}`)
		lp := choicesOf(t, r, 1)[0]["logprobs"].(map[string]any)
		if want := []any{c.compl, c.compl, c.compl}; !slices.Equal(lp["tokens"].([]any), want) {
			t.Errorf("completion, forced token %d: tokens %q, want %q", c.id, lp["tokens"], want)
		}
		if c.id == whole && !slices.Equal(lp["text_offset"].([]any), []any{2.0, 3.0, 4.0}) {
			t.Errorf("completion of 你好's six token ids: text_offset %v, want [2 3 4]", lp["text_offset"])
		}
	}
}
