package node

import (
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// snapLog is the log store as raft sees it: the member's store, with the
// answers a follower needs after it installs a snapshot past entries of
// an older term.
//
// hashicorp/raft (to v1.7.3 at least; its issue #697) keeps a follower's
// entries and last index when it installs a snapshot. A follower that had
// appended entries of an older term which never committed (a deposed
// leader's, say), up to or past the snapshot's index, then checks the
// leader's next append against them and refuses it; the leader sends the
// snapshot again, for ever, and the member never catches up. Once it leads,
// it would also send those entries to a member that needs them.
//
// The entry at the snapshot's index has the snapshot's term (the snapshot
// holds it). A store entry there of another term never committed, nor did
// any after it (log matching), and those before it are in the snapshot:
// snapLog removes them all (dropStale), when the snapshot is installed and
// before raft starts on a data dir that holds such a snapshot. What raft
// then still believes of its log, it checks through snapLog, which gives
// the true answers, and only on a follower, where raft reads an entry at or
// below its applied index only to check the leader's previous one (it never
// applies or sends what snapLog makes up):
//   - The snapshot's index, when the store holds nothing there: a no-op
//     entry of the snapshot's term.
//   - Past the snapshot's index, up to raft's last index, when the store
//     holds nothing from there on: an entry of term 0, which no leader's
//     entry has, so that raft removes the rest as a conflict and appends
//     the leader's entries.
//
// One belief raft checks without its store: when the removed entries ended
// at the snapshot's index, raft keeps that index's old term as its last
// one. snapTransport mends what raft reads against it (see there).
type snapLog struct {
	logStore
	raft atomic.Pointer[raft.Raft]
	snap atomic.Pointer[snapPoint] // the snapshot the store last restored
	// staleLast is raft's last entry as it believes it after dropStale
	// removed it at the snapshot's index, until raft appends past it.
	staleLast atomic.Pointer[snapPoint]
	log       *slog.Logger
}

type snapPoint struct{ index, term uint64 }

func newSnapLog(s logStore, log *slog.Logger) *snapLog { return &snapLog{logStore: s, log: log} }

// attach starts the answers for raft r (none before: raft reads its log
// to start).
func (s *snapLog) attach(r *raft.Raft) { s.raft.Store(r) }

// restored records the snapshot the state machine now holds: the one in
// snaps at index, applied up to it. On a running raft that is a snapshot a
// leader sent: the entries it makes stale are removed.
func (s *snapLog) restored(index uint64, snaps raft.SnapshotStore) {
	metas, err := snaps.List()
	if err != nil {
		return
	}
	for _, m := range metas {
		if m.Index != index {
			continue
		}
		sp := &snapPoint{index: m.Index, term: m.Term}
		s.snap.Store(sp)
		if s.raft.Load() == nil {
			return // raft starting: beforeStart has mended the store
		}
		if last, ok := s.dropStale(sp); ok && last.index == sp.index {
			s.staleLast.Store(&last)
		}
		return
	}
}

// beforeStart removes what the newest snapshot in snaps makes stale,
// before raft reads its log to start.
func (s *snapLog) beforeStart(snaps raft.SnapshotStore) {
	metas, err := snaps.List()
	if err != nil || len(metas) == 0 {
		return
	}
	s.dropStale(&snapPoint{index: metas[0].Index, term: metas[0].Term})
}

// dropStale removes every entry of the store when the one at the
// snapshot's index has another term. It returns the last entry the store
// held, and whether it removed anything.
func (s *snapLog) dropStale(sp *snapPoint) (snapPoint, bool) {
	var l raft.Log
	if err := s.logStore.GetLog(sp.index, &l); err != nil || l.Term == sp.term {
		return snapPoint{}, false
	}
	first, err := s.logStore.FirstIndex()
	var lastIndex uint64
	if err == nil {
		lastIndex, err = s.logStore.LastIndex()
	}
	var last raft.Log
	if err == nil {
		err = s.logStore.GetLog(lastIndex, &last)
	}
	if err == nil {
		err = s.logStore.DeleteRange(first, lastIndex)
	}
	s.log.Warn("raft log held entries of another term at and past the snapshot's index: removed the log (the snapshot holds what came before)",
		"index", sp.index, "term", l.Term, "snapshot_term", sp.term, "first", first, "last", lastIndex, "err", err)
	if err != nil {
		return snapPoint{}, false
	}
	return snapPoint{index: last.Index, term: last.Term}, true
}

// IsMonotonic passes on the store's: raft empties a monotonic store after
// it installs a snapshot, and compacts the others.
func (s *snapLog) IsMonotonic() bool {
	m, ok := s.logStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (s *snapLog) GetLog(index uint64, l *raft.Log) error {
	err := s.logStore.GetLog(index, l)
	sp := s.snap.Load()
	if sp == nil || index < sp.index || (err != nil && err != raft.ErrLogNotFound) {
		return err
	}
	if err == nil && (index > sp.index || l.Term == sp.term) {
		return nil
	}
	r := s.raft.Load()
	if r == nil || r.State() != raft.Follower || index > r.LastIndex() {
		return err
	}
	if index == sp.index {
		if err == nil {
			s.dropStale(sp) // not seen when the snapshot was restored
		}
		*l = raft.Log{Index: index, Term: sp.term, Type: raft.LogNoop}
		return nil
	}
	// Past the snapshot, missing: only a store that lost its whole tail.
	if last, lerr := s.logStore.LastIndex(); lerr != nil || last >= index {
		return err
	}
	*l = raft.Log{Index: index, Term: 0, Type: raft.LogNoop}
	return nil
}

// mend adjusts a request to what raft believes of its log, where that
// belief is stale, before raft reads it:
//   - An append whose previous entry is the snapshot's, while raft still
//     takes its last entry there to be the removed one: the previous
//     entry's term becomes the removed one's, which raft compares it with.
//     The two are the same entry, as far as the leader's check goes: the
//     snapshot holds the leader's.
//   - A vote (or pre-vote) for a candidate whose log ends before the
//     snapshot's entry: refused, by the candidate's last entry counting as
//     none. The candidate lacks a committed entry, and raft, comparing
//     with a stale last entry, might grant it.
//
// A mended request is a copy: the sender may still hold the original (an
// in-memory transport hands over the leader's own request).
func (s *snapLog) mend(rpc *raft.RPC) {
	sp := s.snap.Load()
	if sp == nil {
		return
	}
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		stale := s.staleLast.Load()
		if stale == nil || req.PrevLogEntry != sp.index || req.PrevLogTerm != sp.term || stale.index != sp.index {
			return
		}
		if r := s.raft.Load(); r == nil || r.LastIndex() != stale.index {
			s.staleLast.CompareAndSwap(stale, nil) // raft appended past it
			return
		}
		c := *req
		c.PrevLogTerm = stale.term
		rpc.Command = &c
	case *raft.RequestVoteRequest:
		if before(req.LastLogTerm, req.LastLogIndex, sp) {
			c := *req
			c.LastLogTerm, c.LastLogIndex = 0, 0
			rpc.Command = &c
		}
	case *raft.RequestPreVoteRequest:
		if before(req.LastLogTerm, req.LastLogIndex, sp) {
			c := *req
			c.LastLogTerm, c.LastLogIndex = 0, 0
			rpc.Command = &c
		}
	}
}

// before reports whether a log ending at (term, index) ends before sp.
func before(term, index uint64, sp *snapPoint) bool {
	return term < sp.term || (term == sp.term && index < sp.index)
}

// snapTransport is the peer transport as raft sees it: the requests it
// receives pass through snapLog.mend on their way to raft.
type snapTransport struct {
	peerTransport
	logs      *snapLog
	rpcs      chan raft.RPC
	done      chan struct{}
	closeOnce sync.Once
}

// peerTransport is what raft uses of a transport: raft.NetworkTransport's
// methods (and raft.InmemTransport's, in tests).
type peerTransport interface {
	raft.Transport
	raft.WithClose
	raft.WithPreVote
}

// newSnapTransport starts handing t's requests to raft; raft closes it
// when it shuts down.
func newSnapTransport(t peerTransport, logs *snapLog) *snapTransport {
	st := &snapTransport{peerTransport: t, logs: logs, rpcs: make(chan raft.RPC), done: make(chan struct{})}
	go st.forward()
	return st
}

func (t *snapTransport) forward() {
	in := t.peerTransport.Consumer()
	for {
		select {
		case rpc := <-in:
			t.logs.mend(&rpc)
			select {
			case t.rpcs <- rpc:
			case <-t.done:
				rpc.Respond(emptyResponse(rpc.Command), raft.ErrTransportShutdown)
				return
			}
		case <-t.done:
			return
		}
	}
}

// emptyResponse is the response of cmd's type with nothing in it: what a
// request left unanswered at shutdown gets with its error, since a sender
// may read the response's type before the error (raft's in-memory
// pipeline does).
func emptyResponse(cmd any) any {
	switch cmd.(type) {
	case *raft.AppendEntriesRequest:
		return &raft.AppendEntriesResponse{}
	case *raft.RequestVoteRequest:
		return &raft.RequestVoteResponse{}
	case *raft.RequestPreVoteRequest:
		return &raft.RequestPreVoteResponse{}
	case *raft.InstallSnapshotRequest:
		return &raft.InstallSnapshotResponse{}
	case *raft.TimeoutNowRequest:
		return &raft.TimeoutNowResponse{}
	}
	return nil
}

// Consumer is where raft takes the requests from.
func (t *snapTransport) Consumer() <-chan raft.RPC { return t.rpcs }

// Close stops the hand-off and closes the transport.
func (t *snapTransport) Close() error {
	t.closeOnce.Do(func() { close(t.done) })
	return t.peerTransport.Close()
}
