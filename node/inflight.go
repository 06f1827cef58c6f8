package node

import (
	"sync"
	"time"
)

// inflight counts the requests waiting on a raft future (a proposal, a
// leadership check), so that Close lets them finish before raft shuts
// down: raft never answers a future it has not answered by then, and the
// request's handler would wait for ever. Safe for concurrent use.
type inflight struct {
	mu     sync.Mutex
	n      int
	closed bool
	idle   chan struct{} // closed when n drops to 0, for those waiting
}

// begin counts a request in; false once closing (the request must not
// reach raft).
func (f *inflight) begin() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.n++
	return true
}

// end counts a request out.
func (f *inflight) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// closeAndWait refuses new requests and waits, at most timeout, for those
// in flight.
func (f *inflight) closeAndWait(timeout time.Duration) {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.waitIdle(timeout)
}

// waitIdle waits, at most timeout, until no request is in flight.
func (f *inflight) waitIdle(timeout time.Duration) {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}
