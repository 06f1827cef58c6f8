package node

import (
	"context"
	"sync"
	"time"
)

// coalescer shares one call among concurrent callers. A caller joins the
// round that has not started yet, never one already in flight: every
// answer it gets was fetched after it asked (what a read index needs).
type coalescer struct {
	fetch   func(context.Context) (uint64, error)
	timeout time.Duration

	mu      sync.Mutex
	next    *round // collecting callers; starts when the running one ends
	running bool
}

type round struct {
	done chan struct{}
	v    uint64
	err  error
}

func newCoalescer(fetch func(context.Context) (uint64, error), timeout time.Duration) *coalescer {
	return &coalescer{fetch: fetch, timeout: timeout}
}

func (c *coalescer) do(ctx context.Context) (uint64, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &round{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		c.running = true
		go c.run()
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.v, r.err
	case <-ctx.Done():
		return 0, ErrTimeout
	}
}

func (c *coalescer) run() {
	for {
		c.mu.Lock()
		r := c.next
		c.next = nil
		if r == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		r.v, r.err = c.fetch(ctx)
		cancel()
		close(r.done)
	}
}
