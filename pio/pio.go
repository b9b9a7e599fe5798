// Package pio is the Go API of Inference-PIO: load a compiled engine, then
// generate text or chat with it, streaming. Many calls may run at once;
// they are batched together by the engine's scheduler.
//
//	e, err := pio.Load("qwen3-0.6b.pio", pio.Options{})
//	defer e.Close()
//	res, err := e.Chat(ctx, []pio.Message{{Role: "user", Content: "Hi"}}, pio.ChatOptions{},
//		func(c pio.ChatChunk) { fmt.Print(c.Content) })
//
// Vision-language engines (Qwen3-VL: a vision stage next to the text
// plan) take images: GenerateOptions.Images for token-id and raw prompts,
// image parts (Part) of chat messages. Each request's images are
// preprocessed on its own goroutine; the vision stage runs once per
// request, at the first step that computes one of its image tokens, and
// image tokens are keyed in the prefix cache by the image's content.
//
// It is the Go form of generate_text and chat_completion; `piort run` and
// `piort serve` are built on it.
package pio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/inference-pio/pio/frontends/chat"
	"github.com/inference-pio/pio/frontends/hf"
	"github.com/inference-pio/pio/grammar"
	"github.com/inference-pio/pio/models"
	_ "github.com/inference-pio/pio/models/all" // the architectures, for their context limits
	"github.com/inference-pio/pio/runtime"
	"github.com/inference-pio/pio/runtime/cpu"
	"github.com/inference-pio/pio/runtime/engine"
	"github.com/inference-pio/pio/runtime/kvcache"
	"github.com/inference-pio/pio/runtime/sample"
	"github.com/inference-pio/pio/runtime/scheduler"
	"github.com/inference-pio/pio/runtime/toolcall"
)

// Options configure Load. A zero field takes its default: the Default
// constants below (piort's flags default to them too), and for Threads
// every CPU (GOMAXPROCS, which the CPU backend takes for 0).
type Options struct {
	Threads       int  // CPU threads
	MaxStepTokens int  // tokens per step (the batching budget)
	MaxSeqs       int  // sequences per step
	CacheTokens   int  // KV cache positions shared by all sequences
	BlockSize     int  // positions per KV block
	MaxQueue      int  // requests waiting beyond the running ones
	VerifyWeights bool // check weight checksums at load
	// Backend, when set, makes the backends instead of the CPU ones
	// (`piort serve --device cuda:0`). It is called once for the main
	// (text) plan, with size.Stage "" and the geometry the scheduler
	// needs, and on a multi-stage engine once for each further plan pio
	// runs: Qwen3-VL's vision stage (size.Stage "vision", MaxTokens the
	// image tokens of one request, MaxSeqs 1, no cache).
	Backend func(f *engine.Engine, size BackendSize) (runtime.Backend, error)
	// MaxImageTokens caps the merged image tokens of one request's images
	// on a vision-language engine (the vision stage's step size).
	MaxImageTokens int
}

// The defaults of Options' zero fields: piort's flags and Load take them
// from here; the sizes are runtime's, which the backends and the scheduler
// use for their own zero fields.
const (
	DefaultMaxStepTokens  = runtime.DefaultMaxStepTokens // Options.MaxStepTokens
	DefaultMaxSeqs        = runtime.DefaultMaxSeqs       // Options.MaxSeqs
	DefaultCacheTokens    = runtime.DefaultCacheTokens   // Options.CacheTokens
	DefaultBlockSize      = runtime.DefaultBlockSize     // Options.BlockSize
	DefaultMaxQueue       = runtime.DefaultMaxQueue      // Options.MaxQueue
	DefaultMaxImageTokens = 4096                         // Options.MaxImageTokens (pio's own)
)

// withDefaults gives o's zero fields their defaults (Threads stays 0: the
// backend's all) and refuses negative ones.
func (o Options) withDefaults() (Options, error) {
	if o.MaxStepTokens < 0 || o.MaxSeqs < 0 || o.CacheTokens < 0 || o.BlockSize < 0 || o.MaxQueue < 0 || o.Threads < 0 || o.MaxImageTokens < 0 {
		return o, fmt.Errorf("pio: negative option in %+v", o)
	}
	for _, f := range []struct {
		v   *int
		def int
	}{
		{&o.MaxStepTokens, DefaultMaxStepTokens}, {&o.MaxSeqs, DefaultMaxSeqs}, {&o.CacheTokens, DefaultCacheTokens},
		{&o.BlockSize, DefaultBlockSize}, {&o.MaxQueue, DefaultMaxQueue}, {&o.MaxImageTokens, DefaultMaxImageTokens},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	return o, nil
}

// BackendSize is what a backend must hold: the plan (Stage), the step
// size, the paged cache geometry and the sequences per step.
type BackendSize struct {
	// Stage names the engine's plan to run: "" the main plan, else one of
	// engine.Metadata.Stages (for which the CPU backend's counterpart is
	// cpu.StageFromEngine, the CUDA one's cuda.StageFromEngine).
	Stage                                             string
	MaxTokens, NumBlocks, BlockSize, MaxSeqs, Threads int
}

// Engine is a loaded model with its scheduler. Its methods are safe for
// concurrent use.
type Engine struct {
	file  *engine.Engine
	be    runtime.Backend
	vis   *vision // nil for text-only engines
	sched *scheduler.Scheduler
	text  textCodec
	noTok error // why text is unavailable

	name        string
	arch        string
	vocab       int
	maxModelLen int
	eos         []int32
	chatEOS     []int32 // end-of-turn ids beyond eos (<|im_end|>)
	gen         *hf.GenerationConfig

	gvOnce sync.Once // builds gv on the first constrained request
	gv     *grammarVocab
	mvOnce sync.Once     // builds mv on the first forced tool call
	mv     *grammarVocab // gv with the tool-call markup tokens as text
}

// Load opens an engine file and starts its scheduler.
func Load(path string, opt Options) (*Engine, error) {
	f, err := engine.Open(path, engine.OpenOptions{VerifyWeights: opt.VerifyWeights})
	if err != nil {
		return nil, err
	}
	e, err := newEngine(f, opt)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return e, nil
}

func newEngine(f *engine.Engine, opt Options) (*Engine, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Engine{file: f, name: f.Meta.Model.Name, arch: f.Meta.Model.Architecture}
	// The text decoder's config holds the vocabulary: the top level for
	// text models, text_config for Qwen3-VL. The context limit is the
	// model's (max_position_embeddings there, or transformers' class
	// default when absent).
	full, err := hf.ParseConfig(f.Meta.Model.ConfigJSON)
	if err != nil {
		return nil, fmt.Errorf("pio: %w", err)
	}
	text, err := full.Text()
	if err != nil {
		return nil, fmt.Errorf("pio: %w", err)
	}
	model, err := models.New(full)
	if err != nil {
		return nil, fmt.Errorf("pio: %w", err)
	}
	var cfg struct {
		MaxPos int
		Vocab  int
		EOS    json.RawMessage
	}
	cfg.MaxPos, cfg.Vocab = model.MaxPositions(), text.VocabSize
	for _, raw := range [][]byte{full.Raw, text.Raw} { // eos_token_id: the top level first
		var keys struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(raw, &keys); err != nil {
			return nil, fmt.Errorf("pio: config.json: %w", err)
		}
		if len(cfg.EOS) == 0 {
			cfg.EOS = keys.EOS
		}
	}
	e.vocab = cfg.Vocab
	if len(f.Meta.GenerationConfigJSON) > 0 {
		g, err := hf.ParseGenerationConfig(f.Meta.GenerationConfigJSON, "generation_config.json")
		if err != nil {
			return nil, err
		}
		e.gen = g
		for _, id := range g.EOSTokenIDs {
			e.eos = append(e.eos, int32(id))
		}
	}
	if len(e.eos) == 0 && len(cfg.EOS) > 0 {
		var one int32
		var many []int32
		if json.Unmarshal(cfg.EOS, &one) == nil && string(cfg.EOS) != "null" {
			e.eos = []int32{one}
		} else if json.Unmarshal(cfg.EOS, &many) == nil {
			e.eos = many
		}
	}
	numBlocks := (opt.CacheTokens + opt.BlockSize - 1) / opt.BlockSize
	size := BackendSize{MaxTokens: opt.MaxStepTokens, NumBlocks: numBlocks, BlockSize: opt.BlockSize, MaxSeqs: opt.MaxSeqs, Threads: opt.Threads}
	var be runtime.Backend
	if opt.Backend != nil {
		be, err = opt.Backend(f, size)
	} else {
		be, err = cpu.FromEngine(f, cpu.Options{MaxTokens: size.MaxTokens, NumBlocks: size.NumBlocks, BlockSize: size.BlockSize, MaxSeqs: size.MaxSeqs, Threads: size.Threads})
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if e.vis, err = newVision(f, opt); err != nil {
		be.Close()
		return nil, err
	}
	e.maxModelLen = numBlocks * opt.BlockSize
	if cfg.MaxPos > 0 {
		e.maxModelLen = min(e.maxModelLen, cfg.MaxPos)
	}
	e.sched, err = scheduler.New(be, kvcache.NewAllocator(numBlocks, opt.BlockSize), scheduler.Config{
		MaxStepTokens: opt.MaxStepTokens, MaxSeqs: opt.MaxSeqs, MaxQueue: opt.MaxQueue,
		MaxModelLen: e.maxModelLen, VocabSize: cfg.Vocab,
		NoPrefixCache: !scheduler.PrefixCacheable(f.Meta.Plan),
	})
	if err != nil {
		be.Close()
		e.vis.close()
		return nil, err
	}
	e.be = be
	if len(f.Meta.TokenizerJSON) == 0 {
		e.noTok = errors.New("the engine carries no tokenizer.json")
	} else if e.text, err = loadText(f.Meta.TokenizerJSON, f.Meta.TokenizerConfigJSON, f.Meta.ChatTemplate); err != nil {
		e.noTok = err
	}
	if e.text != nil {
		if id, ok := e.text.TokenID("<|im_end|>"); ok && !slices.Contains(e.eos, id) {
			e.chatEOS = append(e.chatEOS, id)
		}
	}
	return e, nil
}

// Close stops the scheduler (ending open streams) and releases the engine.
func (e *Engine) Close() error {
	e.sched.Close()
	e.be.Close()
	e.vis.close()
	return e.file.Close()
}

// Name returns the model name the engine was built with.
func (e *Engine) Name() string { return e.name }

// Vision reports whether the engine takes images (GenerateOptions.Images,
// image parts of chat messages).
func (e *Engine) Vision() bool { return e.vis != nil }

// Architecture returns the Hugging Face architecture, e.g. "Qwen3ForCausalLM".
func (e *Engine) Architecture() string { return e.arch }

// MaxModelLen returns the most positions (prompt and output) of one sequence.
func (e *Engine) MaxModelLen() int { return e.maxModelLen }

// Stats returns the scheduler's counters.
func (e *Engine) Stats() scheduler.Stats { return e.sched.Stats() }

// Encode turns text into token ids.
func (e *Engine) Encode(text string) ([]int32, error) {
	if e.text == nil {
		return nil, fmt.Errorf("pio: no tokenizer: %w", e.noTok)
	}
	return e.text.Encode(text), nil
}

// TokenBytes returns the raw bytes of token id: its byte-level decoding
// alone, so a token that holds part of a UTF-8 character (a CJK character
// or an emoji is often two or three tokens) gives those bytes, where its
// text (TokenLogprob.Text) has U+FFFD; a special or added token gives its
// content. It returns nil for an id the tokenizer does not know, and on an
// engine without a tokenizer. The server's logprobs take a token's bytes
// from it (server.TokenByter).
func (e *Engine) TokenBytes(id int32) []byte {
	if e.text == nil {
		return nil
	}
	return e.text.TokenBytes(id)
}

// GenerateOptions configure one generation. Nil pointers take the model's
// generation_config.json value, else the OpenAI default.
type GenerateOptions struct {
	MaxTokens         int // 0: until the model's length
	Temperature       *float64
	TopP              *float64
	TopK              *int
	MinP              *float64
	RepetitionPenalty *float64
	PresencePenalty   float64
	FrequencyPenalty  float64
	Seed              *uint64 // nil: a random seed
	Stop              []string
	StopTokenIDs      []int32
	IgnoreEOS         bool
	Logprobs          bool
	TopLogprobs       int
	// LogitBias adds, to the logit of each token id it names, a bias in
	// [-sample.MaxLogitBias, sample.MaxLogitBias] (OpenAI's logit_bias):
	// -100 all but bans a token, +100 all but forces it, greedy or
	// sampled. A value out of range, or an id outside the model's
	// vocabulary, makes the generation fail with ErrInvalid. A biased
	// request takes its tokens from the full row of logits, never from a
	// device-side argmax or candidate list (sample.Options.LogitBias).
	LogitBias map[int32]float32
	// Images are encoded image files (PNG, JPEG, WebP) for a
	// vision-language engine: the k-th <|image_pad|> token of the prompt
	// stands for Images[k] (Chat fills this from the messages' image parts).
	Images [][]byte
	// Grammar, when set, constrains the output to the sentences of a
	// grammar (structured output: grammar.JSONSchema, grammar.Parse, ...):
	// at every step only the tokens the grammar accepts next may be drawn
	// (the model's distribution renormalised over them), end-of-sequence
	// only where the grammar may end, and generation stops ("stop") once
	// the grammar is complete. Such a request takes its tokens from the
	// full row of logits (sample.Options.Constraint). The mask is built
	// over the engine's vocabulary, which is arranged once, on the first
	// constrained request. In Chat, a model that reasons (its tokenizer
	// has <think> and </think>) reasons unconstrained and the grammar
	// starts after </think>: from the start of the answer when the
	// template opens the block, else the first token may open one
	// (unless enable_thinking is false) and is otherwise the grammar's.
	Grammar *grammar.Grammar
}

// TokenLogprob is a token, its text and its log-probability.
type TokenLogprob struct {
	Token   int32
	Text    string
	Logprob float32
}

// Logprob is the log-probability of a generated token and its most
// likely alternatives.
type Logprob struct {
	TokenLogprob
	Top []TokenLogprob
}

// Chunk is what a streaming callback receives: new text and the tokens
// that produced it (text may lag tokens when a stop string or an
// incomplete character is held back).
type Chunk struct {
	Text     string
	Tokens   []int32
	Logprobs []Logprob // when asked for, one per token
}

// Result is a finished generation.
type Result struct {
	Text             string  // up to the stop string, if one ended it
	Tokens           []int32 // up to the token that completed the stop string, if one ended it
	Logprobs         []Logprob
	FinishReason     string // "stop" or "length"
	PromptTokens     int
	CompletionTokens int
	CachedTokens     int // prompt tokens served by the prefix cache
}

// Errors a generation may return (wrapped).
var (
	ErrQueueFull = scheduler.ErrQueueFull // too many requests are waiting
	ErrTooLong   = scheduler.ErrTooLong   // the prompt leaves no room to generate
	ErrInvalid   = scheduler.ErrInvalid   // an option or the prompt is invalid
)

// sampleOptions resolves o against the generation config.
func (e *Engine) sampleOptions(o *GenerateOptions) (sample.Options, error) {
	s := sample.Options{Temperature: 1, TopP: 1, PresencePenalty: o.PresencePenalty, FrequencyPenalty: o.FrequencyPenalty,
		LogitBias: o.LogitBias, Logprobs: o.Logprobs, TopLogprobs: o.TopLogprobs}
	if g := e.gen; g != nil {
		if g.Temperature != nil {
			s.Temperature = *g.Temperature
		}
		if g.TopP != nil {
			s.TopP = *g.TopP
		}
		if g.TopK != nil {
			s.TopK = *g.TopK
		}
		if g.MinP != nil {
			s.MinP = *g.MinP
		}
		if g.RepetitionPenalty != nil {
			s.RepetitionPenalty = *g.RepetitionPenalty
		}
	}
	set := func(dst *float64, v *float64) {
		if v != nil {
			*dst = *v
		}
	}
	set(&s.Temperature, o.Temperature)
	set(&s.TopP, o.TopP)
	set(&s.MinP, o.MinP)
	set(&s.RepetitionPenalty, o.RepetitionPenalty)
	if o.TopK != nil {
		s.TopK = *o.TopK
	}
	if o.Seed != nil {
		s.Seed = *o.Seed
	} else {
		s.Seed = randSeed()
	}
	return s, s.Validate()
}

// Generate completes a text prompt (no chat template), calling fn, when
// not nil, as text arrives.
func (e *Engine) Generate(ctx context.Context, prompt string, opt GenerateOptions, fn func(Chunk)) (Result, error) {
	ids, err := e.Encode(prompt)
	if err != nil {
		return Result{}, err
	}
	return e.GenerateIDs(ctx, ids, opt, fn)
}

// GenerateIDs completes a prompt of token ids.
func (e *Engine) GenerateIDs(ctx context.Context, prompt []int32, opt GenerateOptions, fn func(Chunk)) (Result, error) {
	return e.generate(ctx, prompt, opt, nil, nil, false, fn)
}

// generate runs one request; extraStop are more end-of-turn ids; think,
// when set, starts opt.Grammar after the model's reasoning (Chat); markup
// says opt.Grammar is a tool-call grammar, run over the vocabulary with
// the markup tokens (markupVocab).
func (e *Engine) generate(ctx context.Context, prompt []int32, opt GenerateOptions, extraStop []int32, think *thinkTokens, markup bool, fn func(Chunk)) (Result, error) {
	if opt.MaxTokens < 0 {
		return Result{}, fmt.Errorf("pio: %w: max tokens must be >= 0, got %d", ErrInvalid, opt.MaxTokens)
	}
	so, err := e.sampleOptions(&opt)
	if err != nil {
		return Result{}, fmt.Errorf("pio: %w: %w", ErrInvalid, err)
	}
	req := scheduler.Request{}
	if e.vis != nil {
		in, err := e.vis.prepare(prompt, opt.Images)
		if err != nil {
			return Result{}, err
		}
		prompt, req.CacheKeys, req.Inputs = in.lay.Tokens, in.lay.CacheTokens, in
	} else if len(opt.Images) > 0 {
		return Result{}, fmt.Errorf("pio: %w: %s takes no images", ErrInvalid, e.name)
	}
	room := e.maxModelLen - len(prompt)
	if room < 1 {
		return Result{}, fmt.Errorf("%w: prompt of %d tokens, the model holds %d", scheduler.ErrTooLong, len(prompt), e.maxModelLen)
	}
	maxTokens := room
	if opt.MaxTokens > 0 {
		maxTokens = min(opt.MaxTokens, room)
	}
	stopIDs := append([]int32(nil), opt.StopTokenIDs...)
	if !opt.IgnoreEOS {
		stopIDs = append(stopIDs, e.eos...)
		stopIDs = append(stopIDs, extraStop...)
	}
	for _, s := range opt.Stop {
		if s == "" {
			return Result{}, fmt.Errorf("pio: %w: empty stop string", ErrInvalid)
		}
	}
	if len(opt.Stop) > 0 && e.text == nil {
		return Result{}, fmt.Errorf("pio: stop strings need a tokenizer: %w", e.noTok)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opt.Grammar != nil {
		c, err := e.constraintOver(opt.Grammar, markup)
		if err != nil {
			return Result{}, err
		}
		so.Constraint = c
		if think != nil {
			so.Constraint = think.gate(c)
		}
	}
	req.Prompt, req.MaxTokens, req.Sample, req.StopIDs = prompt, maxTokens, so, stopIDs
	st, err := e.sched.Submit(ctx, req)
	if err != nil {
		return Result{}, err
	}
	res := Result{PromptTokens: len(prompt)}
	var dec streamDecoder
	if e.text != nil {
		dec = e.text.NewStreamDecoder(true)
	}
	stop := newStopMatcher(opt.Stop)
	var text strings.Builder // what has been handed out: res.Text
	stopped := false
	var buf []sample.Result
	for !stopped {
		toks, done, why, err := st.Next(ctx, buf)
		if done {
			switch why {
			case scheduler.FinishStop, scheduler.FinishLength:
				res.FinishReason = string(why)
			default:
				if err == nil {
					err = fmt.Errorf("pio: generation ended: %s", why)
				}
				return res, err
			}
			break
		}
		buf = toks
		var c Chunk
		for _, r := range toks {
			res.Tokens = append(res.Tokens, r.Token)
			c.Tokens = append(c.Tokens, r.Token)
			if dec != nil && !(slices.Contains(stopIDs, r.Token) && !slices.Contains(opt.StopTokenIDs, r.Token)) {
				var out string
				out, stopped = stop.Add(dec.Add(r.Token))
				c.Text += out
			}
			if so.Logprobs || so.TopLogprobs > 0 {
				lp := Logprob{TokenLogprob: e.tokenLogprob(r.Token, r.Logprob)}
				for _, t := range r.Top {
					lp.Top = append(lp.Top, e.tokenLogprob(t.Token, t.Logprob))
				}
				c.Logprobs = append(c.Logprobs, lp)
				res.Logprobs = append(res.Logprobs, lp)
			}
			if stopped { // the token that completed the stop string is the last
				break
			}
		}
		text.WriteString(c.Text)
		if stopped {
			res.FinishReason = "stop"
			cancel() // frees the sequence
		}
		if fn != nil && (c.Text != "" || len(c.Tokens) > 0) {
			fn(c)
		}
	}
	if !stopped && dec != nil {
		out, found := stop.Add(dec.Flush())
		if !found {
			out += stop.Flush()
		} else {
			res.FinishReason = "stop"
		}
		text.WriteString(out)
		if fn != nil && out != "" {
			fn(Chunk{Text: out})
		}
	}
	res.Text = text.String()
	res.CompletionTokens = len(res.Tokens)
	res.CachedTokens = st.CachedTokens()
	return res, nil
}

func (e *Engine) tokenLogprob(id int32, lp float32) TokenLogprob {
	t := TokenLogprob{Token: id, Logprob: lp}
	if e.text != nil {
		t.Text = e.text.Decode([]int32{id}, false)
	} else {
		t.Text = "token_id:" + strconv.Itoa(int(id)) // vLLM's spelling when text is unavailable
	}
	return t
}

// ChatOptions configure Chat.
type ChatOptions struct {
	GenerateOptions
	Tools          []json.RawMessage // OpenAI tool definitions, passed to the template
	ParseToolCalls bool              // split tool calls out of the answer (default when Tools are given)
	EnableThinking *bool             // the template's enable_thinking; nil leaves its default
	TemplateExtra  map[string]any    // more template variables
	// ToolChoice, when set, forces the answer to be tool calls of Tools
	// (OpenAI's tool_choice "required" or a named function), enforced per
	// token by the grammar toolcall.Grammar builds for the model's own
	// tool-call format, each call's arguments valid under its tool's
	// parameters schema; as with Grammar, a reasoning model reasons first.
	// The markup's added tokens (<tool_call>, ...) are allowed as their
	// text where the grammar puts the markup (markupVocab).
	// It cannot be combined with Grammar. A schema the format cannot
	// enforce is an ErrInvalid wrapping a *toolcall.SchemaError.
	ToolChoice *toolcall.Force
}

// ChatChunk is a streamed piece of the assistant's message.
type ChatChunk struct {
	Content   string
	Reasoning string
	ToolCalls []toolcall.Call
	Tokens    []int32
	Logprobs  []Logprob
}

// ChatResult is the assistant's complete message.
type ChatResult struct {
	Message
	Result
}

// Chat renders msgs with the engine's chat template, generates the
// assistant's turn and splits it into content, reasoning and tool calls.
func (e *Engine) Chat(ctx context.Context, msgs []Message, opt ChatOptions, fn func(ChatChunk)) (ChatResult, error) {
	if e.vis == nil && len(chat.Images(msgs)) > 0 {
		return ChatResult{}, fmt.Errorf("pio: %w: %s takes no images", ErrInvalid, e.name)
	}
	prompt, err := e.RenderChat(msgs, opt)
	if err != nil {
		return ChatResult{}, err
	}
	if opt.ToolChoice != nil {
		if opt.Grammar != nil {
			return ChatResult{}, fmt.Errorf("pio: %w: a grammar and a forced tool choice cannot be combined", ErrInvalid)
		}
		g, err := toolcall.Grammar(e.toolFormat(), opt.Tools, *opt.ToolChoice)
		if err != nil {
			return ChatResult{}, fmt.Errorf("pio: %w: %w", ErrInvalid, err)
		}
		opt.Grammar = g
	}
	var think *thinkTokens
	if opt.Grammar != nil {
		if think, err = e.thinkTokens(prompt, opt.EnableThinking); err != nil {
			return ChatResult{}, err
		}
	}
	ids := e.text.Encode(prompt)
	if imgs := chat.Images(msgs); len(imgs) > 0 {
		opt.Images = append(slices.Clip(opt.Images), imgs...)
	}
	parser, err := toolcall.New(e.toolFormat(), toolcall.Options{
		ToolCalls:   opt.ParseToolCalls || len(opt.Tools) > 0,
		Reasoning:   true,
		InReasoning: strings.HasSuffix(strings.TrimRight(prompt, "\n"), "<think>"),
		Tools:       opt.Tools,
	})
	if err != nil {
		return ChatResult{}, err
	}
	var out ChatResult
	out.Role = "assistant"
	add := func(d toolcall.Delta, c Chunk) {
		out.Content += d.Content
		out.ReasoningContent += d.Reasoning
		for _, call := range d.Calls {
			tc := ToolCall{ID: newCallID(), Type: "function"}
			tc.Function.Name, tc.Function.Arguments = call.Name, call.Arguments
			out.ToolCalls = append(out.ToolCalls, tc)
		}
		if fn != nil && (!d.Empty() || len(c.Tokens) > 0) {
			fn(ChatChunk{Content: d.Content, Reasoning: d.Reasoning, ToolCalls: d.Calls, Tokens: c.Tokens, Logprobs: c.Logprobs})
		}
	}
	res, err := e.generate(ctx, ids, opt.GenerateOptions, e.chatEOS, think, opt.ToolChoice != nil, func(c Chunk) { add(parser.Add(c.Text), c) })
	out.Result = res
	if err != nil {
		return out, err
	}
	add(parser.Flush(), Chunk{})
	if len(out.ToolCalls) > 0 && res.FinishReason == "stop" {
		out.FinishReason = "tool_calls"
	}
	return out, nil
}

// RenderChat returns the prompt Chat would generate from.
func (e *Engine) RenderChat(msgs []Message, opt ChatOptions) (string, error) {
	if e.text == nil {
		return "", fmt.Errorf("pio: no tokenizer: %w", e.noTok)
	}
	return e.text.Render(msgs, templateOptions{EnableThinking: opt.EnableThinking, Tools: opt.Tools, Extra: opt.TemplateExtra})
}

// toolFormat is the tool-call markup of the engine's model, chosen by its
// architecture (Qwen3-Coder's XML for Qwen3 MoE/Next, GLM-4.7's for GLM,
// Hermes JSON otherwise).
func (e *Engine) toolFormat() string { return toolcall.FormatFor(e.arch, e.name) }
