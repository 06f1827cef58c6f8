package node

import (
	"bytes"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// inflight counts the requests waiting on a raft future (a proposal, a
// leadership check), a proposal until the database has it with sync acks,
// so that Close lets them finish before raft shuts down (raft never
// answers a future it has not answered by then, and the request's handler
// would wait for ever), and a leader hands over only once they are
// answered. Safe for concurrent use.
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

// proposals counts this leader's proposals and those settled: applied by
// the store, or failed without being appended. The sink's sync batches
// wait for the difference (sqlsink.Proposer). A count only guides that
// wait, which is bounded: an outcome it cannot know (leadership lost
// with the entry appended) is left out, and reset starts both over when
// this member begins to lead. Safe for concurrent use.
type proposals struct {
	proposed atomic.Uint64
	settled  atomic.Uint64
	term     atomic.Uint64 // the term this member leads or last led
}

// Proposals implements sqlsink.Proposer.
func (p *proposals) Proposals() (proposed, settled uint64) {
	// settled first: a proposal counted in it is in proposed too.
	settled = p.settled.Load()
	return p.proposed.Load(), settled
}

// reset counts everything proposed so far as settled, as this member
// begins to lead term.
func (p *proposals) reset(term uint64) {
	p.term.Store(term)
	p.settled.Store(p.proposed.Load())
}

// applied counts in the requests of a batch the store applied: those of
// the term this member leads are its own proposals.
func (p *proposals) applied(logs []*raft.Log) {
	term := p.term.Load()
	var mine uint64
	for _, l := range logs {
		if l.Type == raft.LogCommand && l.Term == term && !bytes.Equal(l.Data, noopEntry) {
			mine++
		}
	}
	p.settled.Add(mine)
}

// failed counts out a proposal raft refused without appending it.
func (p *proposals) failed(err error) {
	switch err {
	case raft.ErrNotLeader, raft.ErrLeadershipTransferInProgress, raft.ErrRaftShutdown, raft.ErrEnqueueTimeout:
		p.settled.Add(1)
	}
}
