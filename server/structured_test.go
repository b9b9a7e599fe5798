package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

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
