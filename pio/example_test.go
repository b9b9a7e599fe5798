package pio_test

import (
	"context"
	"fmt"
	"log"

	"github.com/inference-pio/pio/pio"
)

func Example() {
	e, err := pio.Load("qwen3-0.6b.pio", pio.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	res, err := e.Chat(context.Background(),
		[]pio.Message{{Role: "user", Content: "Name three prime numbers."}},
		pio.ChatOptions{GenerateOptions: pio.GenerateOptions{MaxTokens: 64}},
		func(c pio.ChatChunk) { fmt.Print(c.Content) }) // streamed as it comes
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("\nfinish:", res.FinishReason, "tokens:", res.CompletionTokens)
}
