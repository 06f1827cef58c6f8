package node

import (
	"context"
	"sync"
)

// signal announces that something changed to whoever waits for a
// condition on it. It carries no value: a waiter re-checks its condition.
// Safe for concurrent use.
type signal struct {
	mu sync.Mutex
	ch chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }

// changed returns a channel closed at the next fire.
func (s *signal) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ch
}

// fire wakes every waiter.
func (s *signal) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.ch)
	s.ch = make(chan struct{})
}

// waitFor is the one way a member waits for a condition: it returns nil
// once cond holds, re-checking it each time changed's channel closes (it
// takes the channel before checking, so no change is missed), and returns
// ctx.Err() or ErrStopped otherwise. It never polls.
func waitFor(ctx context.Context, stop <-chan struct{}, changed func() <-chan struct{}, cond func() bool) error {
	for {
		ch := changed()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-stop:
			return ErrStopped
		}
	}
}
