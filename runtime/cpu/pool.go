package cpu

import (
	"sync"
	"sync/atomic"
)

// task is a kernel that can run over a range [lo, hi) of its work items on
// worker w (0 ≤ w < threads; w indexes the worker's scratch).
type task interface {
	run(lo, hi, w int)
}

// pool is a fixed set of worker goroutines. The goroutine calling do is
// worker 0 and works too; the helpers are 1..threads-1. Work is handed out in
// chunks of grain items from a shared counter, so uneven items balance out.
// do allocates nothing.
type pool struct {
	threads int
	wake    []chan struct{} // one per helper
	done    sync.WaitGroup

	// the current job, written before the helpers are woken
	t       task
	n, unit int
	next    atomic.Int64
}

func newPool(threads int) *pool {
	p := &pool{threads: threads}
	for i := 1; i < threads; i++ {
		c := make(chan struct{})
		p.wake = append(p.wake, c)
		go func() {
			for range c {
				p.work(i)
				p.done.Done()
			}
		}()
	}
	return p
}

// do runs t over [0, n) in chunks of grain items and returns when all are done.
func (p *pool) do(t task, n, grain int) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	chunks := (n + grain - 1) / grain
	helpers := min(p.threads, chunks) - 1
	if helpers <= 0 {
		t.run(0, n, 0)
		return
	}
	p.t, p.n, p.unit = t, n, grain
	p.next.Store(0)
	p.done.Add(helpers)
	for _, c := range p.wake[:helpers] {
		c <- struct{}{}
	}
	p.work(0)
	p.done.Wait()
	p.t = nil
}

func (p *pool) work(w int) {
	for {
		lo := int(p.next.Add(1)-1) * p.unit
		if lo >= p.n {
			return
		}
		p.t.run(lo, min(lo+p.unit, p.n), w)
	}
}

// grainFor splits n items into about 4 chunks per thread, each of at least
// minGrain items, so small jobs stay on one thread.
func (p *pool) grainFor(n, minGrain int) int {
	return max(minGrain, (n+4*p.threads-1)/(4*p.threads))
}

// close stops the helpers.
func (p *pool) close() {
	for _, c := range p.wake {
		close(c)
	}
	p.wake = nil
}
