package server

import (
	"encoding/json"
	"sync"

	"github.com/inference-pio/pio/grammar"
)

// anyObject is the grammar of response_format json_object: any JSON object.
var anyObject = sync.OnceValues(func() (*grammar.Grammar, error) {
	return grammar.JSONSchema([]byte(`{"type":"object"}`))
})

// responseFormat reads response_format (both endpoints, as vLLM): null or
// {"type":"text"} constrains nothing; {"type":"json_object"} gives the
// grammar of any JSON object; {"type":"json_schema","json_schema":{"name":
// ...,"schema":{...},"strict":...}} that of the schema (grammar.JSONSchema;
// a keyword it does not support is a 400 naming it). strict is accepted
// either way: the schema is always enforced, token by token. In a chat
// with a reasoning model the constraint starts after </think>
// (pio.GenerateOptions.Grammar).
func (p *samplingParams) responseFormat() (*grammar.Grammar, *apiError) {
	if isNull(p.ResponseFormat) {
		return nil, nil
	}
	var typ string
	var js json.RawMessage
	extras, e := decodeObject(p.ResponseFormat, "response_format.", map[string]any{"type": &typ, "json_schema": &js}, nil)
	if e != nil {
		return nil, e
	}
	p.extras.add("response_format.", extras)
	switch typ {
	case "text":
		return nil, nil
	case "json_object":
		g, err := anyObject()
		if err != nil {
			return nil, badRequest("response_format", "response_format: %v", err)
		}
		return g, nil
	case "json_schema":
	default:
		return nil, badRequest("response_format.type", `response_format.type must be "text", "json_object" or "json_schema", got %q`, typ)
	}
	if isNull(js) {
		return nil, badRequest("response_format.json_schema", "response_format.json_schema is required with type json_schema")
	}
	var name string
	var desc *string
	var strict *bool
	var schema json.RawMessage
	extras, e = decodeObject(js, "response_format.json_schema.", map[string]any{
		"name": &name, "description": &desc, "schema": &schema, "strict": &strict,
	}, nil)
	if e != nil {
		return nil, e
	}
	p.extras.add("response_format.json_schema.", extras)
	if name == "" {
		return nil, badRequest("response_format.json_schema.name", "response_format.json_schema.name is required")
	}
	if isNull(schema) {
		return nil, badRequest("response_format.json_schema.schema", "response_format.json_schema.schema is required")
	}
	g, err := grammar.JSONSchema(schema)
	if err != nil {
		return nil, badRequest("response_format.json_schema.schema", "response_format.json_schema.schema: %v", err)
	}
	return g, nil
}
