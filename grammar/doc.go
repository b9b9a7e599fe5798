// Package grammar constrains generated text: a context-free grammar, a
// regular expression, a choice among strings or a JSON Schema is compiled
// into one grammar form, a Matcher follows it byte by byte, and Mask turns
// a Matcher's state into the set of vocabulary tokens that may come next.
//
// # The grammar form: GBNF
//
// Grammars are written in GBNF, the EBNF dialect of llama.cpp, because the
// users who bring grammars already speak it: llama.cpp's server and vLLM's
// guided_grammar take it, and its JSON-Schema converter is the reference
// most tools compare with. A grammar is a list of rules, one per line:
//
//	root   ::= object
//	object ::= "{" ws ( pair ( "," ws pair )* )? "}"
//	pair   ::= string ":" ws value   # comments run to the end of the line
//
// A rule body is alternatives separated by |, each a sequence of
// "literals" (escapes \n \r \t \\ \" \' \[ \] \xHH \uHHHH \UHHHHHHHH),
// [character classes] (ranges a-z, negation [^...], the same escapes), .
// (any character), rule names and ( groups ), each optionally followed by
// *, +, ?, {m}, {m,} or {m,n}. A rule ends at the end of its line unless
// a group is open. The start rule is root. Characters are Unicode code
// points written as UTF-8; the matcher works on bytes, so a class is
// compiled into a small byte automaton over its UTF-8 sequences (one
// element with a byte-set test per state, the later states shared by every
// use of the class) and a token may end inside a character.
//
// Left recursion (a rule that can reach itself without consuming a byte,
// including through rules that match the empty string) is rejected at
// compile time with the path that closes the cycle, as llama.cpp does.
//
// # The matcher: a set of persistent stacks
//
// A compiled grammar is a flat array of elements (a byte set, a rule
// reference, or the end of an alternative). A parse position is a stack of
// element indices, stored as an immutable linked list so that stacks share
// tails and a Matcher is copied in O(number of stacks). The Matcher holds
// the set of stacks whose top is a byte set (after expanding rule
// references and popping finished alternatives); a byte advances every
// stack whose top accepts it and expands the result again. Continuations
// at the end of an alternative are not pushed, so right recursion (the
// form repetitions compile to) does not deepen the stacks.
//
// The cost of one byte is bounded: an expansion may take at most maxWork
// steps and keep at most MaxStacks distinct stacks; a grammar so ambiguous
// that it exceeds either has the byte rejected, never an unbounded step.
// Grammars this package generates (regular expressions, choices, JSON
// Schema) are unambiguous or nearly so and stay far below the limits.
//
// # Masks
//
// A Vocab arranges the tokens in a byte trie. The mask of a state is the
// set of tokens accepted from at least one of its stacks, so it is the
// union of one mask per stack, and each is computed in two parts, after
// xgrammar's split of tokens into context-independent and
// context-dependent ones:
//
//   - The top frames of the stack (prefixFrames of them: inside a JSON
//     string, the character class, the repetition and the closing quote)
//     are put over a sentinel, bottom, and the whole trie is walked from
//     them. A token that a path accepts without popping below them is
//     accepted whatever lies below (context-independent); a trie node where
//     a path pops down to bottom is kept on a frontier, since the rest of
//     the token depends on the stack below (context-dependent); every other
//     token is rejected whatever lies below. This answer depends on the top
//     frames alone, so the Grammar keeps it per Vocab, keyed by the frames,
//     and every string of the same rule shares it.
//   - At mask time the cached accepted set is ORed in, the stack below the
//     frames is expanded, and only the subtrees of the frontier nodes (a
//     token popping below the frames: inside a string, those that close it
//     and go on) are walked against it.
//
// Whole masks are also kept, keyed by the set of stacks: inside a string
// the state after every whole character is the same, so most masks there
// are a copy. Both caches are bounded, and results do not depend on them.
// A walk tests an edge only when a stack's top admits its byte, and stack
// nodes come from an arena released edge by edge, so a walk allocates
// nothing once warm.
//
// # What it is not for
//
// The package knows nothing of tokenizers, models or HTTP: a vocabulary is
// handed to NewVocab as byte strings, and what to do with a mask (apply it
// to logits on the host or the device) belongs to the sampler and the
// backends.
package grammar
