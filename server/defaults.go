package server

import "fmt"

// Defaults are the sampling parameters of requests that leave them out
// (Config.Defaults; `piort serve`'s sampling flags). A request's own value
// wins — JSON null counts as left out — and a parameter neither sets takes
// the model's generation_config value, else OpenAI's default. A nil field
// sets no default. Each value must be in the range a request may send
// (New refuses one outside it).
type Defaults struct {
	Temperature       *float64 // [0, 2]
	TopP              *float64 // (0, 1]
	TopK              *int     // -1 (off) or >= 0
	MinP              *float64 // [0, 1]
	RepetitionPenalty *float64 // (0, 2]
	PresencePenalty   *float64 // [-2, 2]
	FrequencyPenalty  *float64 // [-2, 2]
	// Seed makes every request that sends no seed draw from it, so that
	// the same request gives the same answer (its n choices draw from
	// seeds derived from it, as a request's own seed's do).
	Seed *uint64
}

// check reports the first default out of range, as the request field it
// stands for would be refused.
func (d *Defaults) check() error {
	var p samplingParams
	p.withDefaults(d)
	if _, e := p.options(nil, false, -1); e != nil {
		return fmt.Errorf("server: default %s", e.Message)
	}
	return nil
}

// withDefaults gives the parameters p leaves out d's values.
func (p *samplingParams) withDefaults(d *Defaults) {
	for _, f := range []struct{ dst, def **float64 }{
		{&p.Temperature, &d.Temperature}, {&p.TopP, &d.TopP}, {&p.MinP, &d.MinP},
		{&p.RepetitionPenalty, &d.RepetitionPenalty}, {&p.PresencePenalty, &d.PresencePenalty}, {&p.FrequencyPenalty, &d.FrequencyPenalty},
	} {
		*f.dst = orDefault(*f.dst, *f.def)
	}
	p.TopK = orDefault(p.TopK, d.TopK)
	if p.Seed == nil && d.Seed != nil {
		s := int64(*d.Seed) // the bits a request's seed carries (options takes them back)
		p.Seed = &s
	}
}

// orDefault is v, or when v is nil a copy of def (nil when def is).
func orDefault[T any](v, def *T) *T {
	if v != nil || def == nil {
		return v
	}
	c := *def
	return &c
}
