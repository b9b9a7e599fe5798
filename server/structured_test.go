package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/inference-pio/pio/internal/schemacheck"
	"github.com/inference-pio/pio/pio"
)

// TestResponseFormat: response_format json_schema (strict) is enforced on
// both endpoints: at temperature 1, every choice that finishes ("stop")
// is valid under the schema by an independent validator; json_object
// greedy gives a JSON object; a schema with a keyword the grammar does not
// support is a 400 naming it.
func TestResponseFormat(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 64, MaxSeqs: 16, CacheTokens: 16384}, Config{})
	chatURL, compURL := srv.URL+"/v1/chat/completions", srv.URL+"/v1/completions"
	finished, total := 0, 0
	for _, name := range []string{"get_weather", "booleans_nulls", "coordinates"} {
		sc := schemacheck.Load(t, "..", name)
		rf := fmt.Sprintf(`"response_format":{"type":"json_schema","json_schema":{"name":%q,"schema":%s,"strict":true}}`, name, sc.Src)
		for seed, body := range map[int]string{
			1: `{"messages":[{"role":"user","content":"weather?"}],"chat_template_kwargs":{"enable_thinking":false},` + rf,
			2: `{"prompt":"JSON:",` + rf,
		} {
			url := chatURL
			if seed == 2 {
				url = compURL
			}
			r := postOK(t, url, body+fmt.Sprintf(`,"n":16,"temperature":1,"seed":%d,"max_tokens":1024}`, seed))
			for _, ch := range r["choices"].([]any) {
				ch := ch.(map[string]any)
				total++
				text, _ := ch["text"].(string)
				if m, ok := ch["message"].(map[string]any); ok {
					text, _ = m["content"].(string)
				}
				if ch["finish_reason"] != "stop" {
					continue
				}
				finished++
				if err := sc.Validate(text); err != nil {
					t.Errorf("%s %s: %q is invalid: %v", name, url, text, err)
				}
			}
		}
	}
	t.Logf("%d of %d choices finished, all valid", finished, total)
	if finished < total*3/4 {
		t.Errorf("only %d of %d choices finished within 1024 tokens", finished, total)
	}

	r := postOK(t, chatURL, `{"messages":[{"role":"user","content":"hi"}],"chat_template_kwargs":{"enable_thinking":false},"response_format":{"type":"json_object"},"temperature":0,"max_tokens":512}`)
	ch := r["choices"].([]any)[0].(map[string]any)
	text := ch["message"].(map[string]any)["content"].(string)
	var obj map[string]any
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber() // the random model writes numbers no float64 holds
	if ch["finish_reason"] == "stop" && dec.Decode(&obj) != nil {
		t.Errorf("json_object: %q is no JSON object", text)
	}

	status, body := post(t, chatURL, "", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","patternProperties":{"a":{}}}}}}`)
	if m, param := apiErrorOf(t, body); status != 400 || param != "response_format.json_schema.schema" || !strings.Contains(m, "patternProperties") {
		t.Errorf("unsupported keyword: status %d param %q message %q; want 400 naming patternProperties", status, param, m)
	}
}

// TestResponseFormatOpenAIClient: the official Go client gets schema-valid
// JSON for a strict json_schema, streamed or not.
func TestResponseFormatOpenAIClient(t *testing.T) {
	srv, _ := start(t, pio.Options{MaxStepTokens: 64, MaxSeqs: 8, CacheTokens: 8192}, Config{})
	sc := schemacheck.Load(t, "..", "get_weather")
	var schema map[string]any
	if err := json.Unmarshal(sc.Src, &schema); err != nil {
		t.Fatal(err)
	}
	c := client(srv.URL, "")
	params := openai.ChatCompletionNewParams{
		Model:       "tiny",
		Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")},
		MaxTokens:   openai.Int(1024),
		Temperature: openai.Float(1),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "get_weather", Schema: schema, Strict: openai.Bool(true)},
		}},
	}
	params.SetExtraFields(map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": false}})
	valid := 0
	for seed := int64(1); seed <= 8; seed++ {
		params.Seed = openai.Int(seed)
		r, err := c.Chat.Completions.New(context.Background(), params)
		if err != nil {
			t.Fatal(err)
		}
		if ch := r.Choices[0]; ch.FinishReason == "stop" {
			if err := sc.Validate(ch.Message.Content); err != nil {
				t.Errorf("seed %d: %q is invalid: %v", seed, ch.Message.Content, err)
			}
		}
		st := c.Chat.Completions.NewStreaming(context.Background(), params)
		var acc openai.ChatCompletionAccumulator
		for st.Next() {
			acc.AddChunk(st.Current())
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if ch := acc.Choices[0]; ch.FinishReason == "stop" {
			if ch.Message.Content != r.Choices[0].Message.Content {
				t.Errorf("seed %d: streamed %q, not streamed %q", seed, ch.Message.Content, r.Choices[0].Message.Content)
			}
			if err := sc.Validate(ch.Message.Content); err != nil {
				t.Errorf("seed %d: streamed %q is invalid: %v", seed, ch.Message.Content, err)
			}
			valid++
		}
	}
	t.Logf("%d of 8 seeds finished, each valid and equal streamed", valid)
	if valid < 6 {
		t.Errorf("only %d of 8 seeds finished within 1024 tokens", valid)
	}
}
