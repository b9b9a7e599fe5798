package server

import (
	"context"
	"sync"

	"github.com/inference-pio/pio/pio"
)

// fanOut runs the k choices of one request (OpenAI's n, completions'
// best_of) and returns the first error any of them returned. Choice 0
// runs first; the others start once it calls started — at its first
// token, when its prompt's full blocks are committed to the prefix cache —
// so they take those blocks from the cache instead of computing the
// prompt k times (were all k submitted at once, they would be admitted in
// the same step, before any block is cached). When a choice fails the
// others are cancelled.
func fanOut(ctx context.Context, k int, run func(ctx context.Context, i int, started func()) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		once     sync.Once
	)
	ready := make(chan struct{})
	started := func() { once.Do(func() { close(ready) }) }
	do := func(i int, started func()) {
		defer wg.Done()
		if err := run(ctx, i, started); err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err // the cancellations it causes come later
			}
			mu.Unlock()
			cancel()
		}
	}
	wg.Add(1)
	go func() {
		defer started() // choice 0 may end, or fail, before a token
		do(0, started)
	}()
	<-ready
	for i := 1; i < k && ctx.Err() == nil; i++ {
		wg.Add(1)
		go do(i, func() {})
	}
	wg.Wait()
	return firstErr
}

// choiceOptions are the options of choice i: with a seed, choice i > 0
// draws from a seed derived from it, so that the choices differ and a
// request repeated with the same seed gives the same choices; choice 0
// keeps the seed, so n = 1 is unchanged. (Without a seed each choice gets
// a random one; at temperature 0 every choice is the same greedy answer,
// as OpenAI's are.)
func choiceOptions(o pio.GenerateOptions, i int) pio.GenerateOptions {
	if o.Seed != nil && i > 0 {
		s := splitmix64(*o.Seed + uint64(i)*0x9e3779b97f4a7c15)
		o.Seed = &s
	}
	return o
}

// splitmix64 is SplitMix64's output function: nearby seeds give unrelated
// ones.
func splitmix64(x uint64) uint64 {
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// usageOfChoices is the usage of a request's choices: the prompt once (and
// its cached tokens as choice 0 found them), the completion tokens of every
// choice generated — best_of candidates not returned included.
func usageOfChoices(rs []pio.Result) *usage {
	u := usageOf(rs[0])
	for _, r := range rs[1:] {
		u.CompletionTokens += r.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}
