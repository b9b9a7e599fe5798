package pio

// Message is one chat message, as chat templates and the OpenAI API see it.
type Message struct {
	Role             string
	Content          string
	ReasoningContent string
	ToolCalls        []ToolCall
	ToolCallID, Name string
}

// ToolCall is a call the assistant made.
type ToolCall struct {
	ID, Type string
	Function struct {
		Name      string
		Arguments string
	}
}
