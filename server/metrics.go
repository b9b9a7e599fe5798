package server

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	goruntime "runtime"
	"sort"
	"strconv"
	"sync"
)

// The metrics are written in the Prometheus text format (version 0.0.4)
// by hand: a few counters, gauges and histograms do not justify
// client_golang's eight modules (protobuf included).

// histogram is a Prometheus histogram with fixed buckets.
type histogram struct {
	name, help string
	bounds     []float64
	mu         sync.Mutex
	counts     []uint64 // per bucket, not cumulative; last is +Inf
	sum        float64
	n          uint64
}

func newHistogram(name, help string, bounds []float64) *histogram {
	return &histogram{name: name, help: help, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	i := sort.SearchFloat64s(h.bounds, v) // first bound >= v
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.n++
	h.mu.Unlock()
}

func (h *histogram) write(w io.Writer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", h.name, h.help, h.name)
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", h.name, formatFloat(b), cum)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n", h.name, h.n, h.name, formatFloat(h.sum), h.name, h.n)
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return fmt.Sprintf("%g", v)
}

func writeMetric(w io.Writer, kind, name, help string, v float64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, kind, name, formatFloat(v))
}

var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}

type metrics struct {
	ttft *histogram
	itl  *histogram
	e2e  *histogram

	mu       sync.Mutex
	requests map[string]uint64 // by outcome
}

func newMetrics() *metrics {
	return &metrics{
		ttft:     newHistogram("pio_time_to_first_token_seconds", "Time from request arrival to the first generated token.", latencyBuckets),
		itl:      newHistogram("pio_inter_token_latency_seconds", "Time between generated tokens of a request.", latencyBuckets),
		e2e:      newHistogram("pio_e2e_request_latency_seconds", "Time from request arrival to its last token.", latencyBuckets),
		requests: map[string]uint64{},
	}
}

func (m *metrics) count(outcome string) {
	m.mu.Lock()
	m.requests[outcome]++
	m.mu.Unlock()
}

func (s *Server) writeMetrics(w io.Writer) {
	st := s.eng.Stats()
	writeMetric(w, "gauge", "pio_num_requests_running", "Requests in the running batch.", float64(st.Running))
	writeMetric(w, "gauge", "pio_num_requests_waiting", "Requests waiting for admission.", float64(st.Waiting))
	usage := 0.0
	if st.NumBlocks > 0 {
		usage = 1 - float64(st.FreeBlocks)/float64(st.NumBlocks)
	}
	writeMetric(w, "gauge", "pio_kv_cache_usage_ratio", "Fraction of KV cache blocks held by sequences.", usage)
	writeMetric(w, "gauge", "pio_kv_cache_blocks", "KV cache blocks in the pool.", float64(st.NumBlocks))
	writeMetric(w, "gauge", "pio_kv_cache_free_blocks", "KV cache blocks not held by any sequence (cached ones included).", float64(st.FreeBlocks))
	writeMetric(w, "gauge", "pio_prefix_cache_blocks", "Blocks in the prefix cache.", float64(st.CachedBlocks))
	writeMetric(w, "counter", "pio_prompt_tokens_total", "Prompt tokens of admitted requests.", float64(st.PromptTokens))
	writeMetric(w, "counter", "pio_prefill_tokens_total", "Prompt positions computed (prefix-cache hits excluded, recomputation included).", float64(st.PrefillTokens))
	writeMetric(w, "counter", "pio_prompt_cached_tokens_total", "Prompt tokens served by the prefix cache at admission.", float64(st.CachedTokens))
	writeMetric(w, "counter", "pio_generation_tokens_total", "Generated tokens.", float64(st.GeneratedTokens))
	writeMetric(w, "counter", "pio_prefix_cache_queries_total", "Positions looked up in the prefix cache.", float64(st.PrefixQueried))
	writeMetric(w, "counter", "pio_prefix_cache_hits_total", "Positions found in the prefix cache.", float64(st.PrefixHit))
	hit := 0.0
	if st.PrefixQueried > 0 {
		hit = float64(st.PrefixHit) / float64(st.PrefixQueried)
	}
	writeMetric(w, "gauge", "pio_prefix_cache_hit_rate", "Prefix cache hits over queries, in positions, since start.", hit)
	writeMetric(w, "counter", "pio_num_preemptions_total", "Sequences preempted for recomputation.", float64(st.Preemptions))
	writeMetric(w, "counter", "pio_engine_steps_total", "Batched steps run.", float64(st.Steps))
	writeMetric(w, "counter", "pio_tokens_from_candidates_total", "Tokens drawn from the device's candidate lists (CUDA), no logits downloaded.", float64(st.FromCandidates))
	writeMetric(w, "counter", "pio_tokens_from_argmax_total", "Tokens the device's argmax gave (steps whose sampling rows are all greedy), no logits downloaded.", float64(st.FromArgmax))
	writeMetric(w, "counter", "pio_tokens_from_logits_total", "Tokens drawn from downloaded logits.", float64(st.FromLogits))
	writeMetric(w, "gauge", "go_goroutines", "Number of goroutines that currently exist.", float64(goruntime.NumGoroutine()))
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	writeMetric(w, "gauge", "go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans.", float64(ms.HeapInuse))
	if rss, ok := residentBytes(); ok {
		writeMetric(w, "gauge", "process_resident_memory_bytes", "Resident memory size in bytes.", float64(rss))
	}
	s.metrics.ttft.write(w)
	s.metrics.itl.write(w)
	s.metrics.e2e.write(w)
	s.metrics.mu.Lock()
	defer s.metrics.mu.Unlock()
	fmt.Fprintf(w, "# HELP pio_requests_total Finished HTTP requests by outcome.\n# TYPE pio_requests_total counter\n")
	keys := make([]string, 0, len(s.metrics.requests))
	for k := range s.metrics.requests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "pio_requests_total{outcome=%q} %d\n", k, s.metrics.requests[k])
	}
}

// residentBytes reads the process's resident set from /proc (Linux only).
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}
