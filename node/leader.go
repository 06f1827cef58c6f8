package node

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// leadership is this member's view of who leads, and the leader's duties
// that follow an election. It owns readiness: a member that wins an
// election serves as leader only once it has committed and applied a
// no-op of its term (so everything committed before is applied) and run
// its gain hook (the pending database snapshot, the sink, the lease
// clock); losing leadership runs the lose hook first. Its signal fires on
// every change of raft state, of the known leader and of readiness, so
// waiters (writes waiting to be proposed, forwarding looking for a leader,
// health) wake on change instead of polling. It also hands leadership over
// before the member stops, and nudges followers when a write would
// otherwise leave them waiting for raft's commit timeout.
//
// New wires it (attach once raft runs); run and observe are its goroutines (owned by the node's
// wait group). Its methods are safe for concurrent use.
type leadership struct {
	raft    *raft.Raft
	self    raft.ServerID
	timeout time.Duration // bounds the no-op of a new term
	log     *slog.Logger
	stop    <-chan struct{}
	// gain runs once a new leader's no-op is applied, before it is
	// ready; lose runs at every change of leadership, before anything
	// else. Both run on the leadership goroutine.
	gain, lose func()
	// peers counts the other members of the configuration.
	peers func() int

	sig      *signal
	ready    atomic.Bool
	hasPeers atomic.Bool // the configuration has other members
	obs      *raft.Observer
	obsCh    chan raft.Observation
}

func newLeadership(self string, timeout time.Duration, log *slog.Logger, stop <-chan struct{}) *leadership {
	return &leadership{
		self: raft.ServerID(self), timeout: timeout, log: log, stop: stop,
		gain: func() {}, lose: func() {}, peers: func() int { return 0 },
		sig:   newSignal(),
		obsCh: make(chan raft.Observation, 64),
	}
}

// attach starts observing raft's changes of state and leader. Until then
// the part is not ready, so the apply path's nudge does nothing.
func (l *leadership) attach(r *raft.Raft) {
	l.raft = r
	l.obs = raft.NewObserver(l.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(l.obs)
}

// observe fires the signal on raft's changes of state and leader.
func (l *leadership) observe() {
	for {
		select {
		case <-l.stop:
			l.raft.DeregisterObserver(l.obs)
			return
		case <-l.obsCh:
			l.sig.fire()
		}
	}
}

// run makes this member ready to serve as leader after each election it
// wins, and unready at each change.
func (l *leadership) run() {
	for {
		select {
		case <-l.stop:
			return
		case leader := <-l.raft.LeaderCh():
			l.setReady(false)
			l.lose()
			if !leader {
				l.log.Info("lost leadership", "term", l.raft.CurrentTerm())
				continue
			}
			l.hasPeers.Store(l.peers() > 0)
			if !l.commitNoop() {
				continue
			}
			l.gain()
			l.setReady(true)
			l.log.Info("became leader", "term", l.raft.CurrentTerm())
		}
	}
}

// commitNoop commits the new leader's no-op through the state machine:
// once it is applied, everything committed in earlier terms is too (raft's
// own no-op and barrier entries never reach the store). It tries again
// while this member still leads: a leader that gave up after one failure
// would lead without ever being ready, and every write would time out
// until the next election.
func (l *leadership) commitNoop() bool {
	for {
		err := l.raft.Apply(noopEntry, l.timeout).Error()
		if err == nil {
			return true
		}
		if l.raft.State() != raft.Leader {
			return false
		}
		l.log.Warn("no-op after election failed; trying again", "err", err)
		select {
		case <-l.stop:
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *leadership) setReady(v bool) {
	if l.ready.Swap(v) != v {
		l.sig.fire()
	}
}

// isReady reports whether this member leads and is ready to serve as
// leader.
func (l *leadership) isReady() bool { return l.ready.Load() && l.raft.State() == raft.Leader }

// leads reports whether raft says this member leads (ready or not).
func (l *leadership) leads() bool { return l.raft.State() == raft.Leader }

// waitReady waits until this member leads and is ready: ErrNoLeader if ctx
// ends with no leader known, ErrTimeout if another member leads.
func (l *leadership) waitReady(ctx context.Context) error {
	err := waitFor(ctx, l.stop, l.sig.changed, l.isReady)
	if err != nil && err != ErrStopped {
		if l.raft.Leader() == "" {
			return ErrNoLeader
		}
		return ErrTimeout
	}
	return err
}

// waitLeading waits until this member, leading, is ready; it fails with
// ErrNotLeader as soon as it does not lead.
func (l *leadership) waitLeading(ctx context.Context) error {
	err := waitFor(ctx, l.stop, l.sig.changed, func() bool { return l.isReady() || !l.leads() })
	switch {
	case err == ErrStopped:
		return err
	case err != nil:
		return ErrTimeout
	case !l.isReady():
		return ErrNotLeader
	}
	return nil
}

// waitLeader waits until a leader is known and returns its address, or
// "" when this member leads.
func (l *leadership) waitLeader(ctx context.Context) (string, error) {
	var addr raft.ServerAddress
	err := waitFor(ctx, l.stop, l.sig.changed, func() bool {
		if l.leads() {
			addr = ""
			return true
		}
		var id raft.ServerID
		addr, id = l.raft.LeaderWithID()
		return id != "" && id != l.self
	})
	switch {
	case err == ErrStopped:
		return "", err
	case err != nil:
		return "", ErrNoLeader
	}
	return string(addr), nil
}

// handOver transfers leadership before this member stops, so that the
// cluster has a leader again within a round trip instead of an election
// timeout. It first stops taking new requests as leader (they wait for the
// next leader, as during raft's own transfer) and lets those in flight
// commit, and with sync acks reach the database, at most idleWait: a
// proposal still uncommitted when leadership moves would be answered
// "leader changed", and one committed but not in the database would wait
// for a sink that has stopped, their outcome unknown.
func (l *leadership) handOver(voters int, idleWait func(time.Duration)) {
	if !l.leads() || voters < 2 {
		return
	}
	l.setReady(false)
	idleWait(l.timeout)
	if err := l.raft.LeadershipTransfer().Error(); err != nil {
		l.log.Warn("leadership transfer before stopping failed", "err", err)
		if l.leads() {
			l.setReady(true)
		}
		return
	}
	l.log.Info("handed leadership over before stopping")
}

// nudge tells followers promptly that the leader's writes are committed.
// Raft sends the commit index with the next AppendEntries; when no write
// follows, that is only after raft's commit timeout (50 ms), and
// followers' watchers, forwarded writes and reads would wait that long.
// So when the leader applies a request and nothing else is in flight, it
// first appends a no-op, whose AppendEntries carries the commit at once
// (while the leader itself applies). Under load, entries in flight carry
// it and no no-op is added. Apply goroutine only.
func (l *leadership) nudge(e *raft.Log) {
	if !l.ready.Load() || !l.hasPeers.Load() || e.Type != raft.LogCommand || bytes.Equal(e.Data, noopEntry) {
		return
	}
	if l.raft.LastIndex() > e.Index {
		return
	}
	// Bounded: the apply goroutine must never wait long on raft.
	l.raft.Apply(noopEntry, 10*time.Millisecond) // its outcome does not matter
}

// noopEntry is the empty request: a new leader's first entry, and the
// nudge.
var noopEntry = func() []byte {
	b, err := fsm.Encode(&pb.InternalRaftRequest{})
	if err != nil {
		panic(err)
	}
	return b
}()
