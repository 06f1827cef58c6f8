package node

import (
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// snapLog is the log store as raft sees it: the member's store, with the
// answers a follower needs after it installs a snapshot past entries of
// an older term.
//
// hashicorp/raft (to v1.7.3 at least) keeps a follower's last index when
// it installs a snapshot. A follower that had appended entries of an
// older term which never committed (a deposed leader's, say) past the
// snapshot's index then checks the leader's next append against them: on
// raft-boltdb the entry at the snapshot's index is still there with its
// older term, on raft-wal (which raft empties after the install) it is
// gone, and either way the append is refused and the leader sends the
// snapshot again, for ever. The member never catches up.
//
// What raft asks there has a true answer the store cannot give: the entry
// at the snapshot's index has the snapshot's term (the snapshot holds it),
// and entries past it that the store lost are no entries of the leader's.
// snapLog gives those answers, and only on a follower, where raft reads
// an entry at or below its applied index only to check the leader's
// previous one: it never applies or sends what snapLog makes up.
//   - The snapshot's index, when the store holds another term there or
//     nothing: a no-op entry of the snapshot's term. A stale entry there
//     is removed with every entry before it (the snapshot holds them), so
//     that this member, once it leads, never sends it.
//   - Past the snapshot's index, up to raft's last index, when the store
//     holds nothing from there on: an entry of term 0, which no leader's
//     entry has, so that raft removes the rest as a conflict and appends
//     the leader's entries.
type snapLog struct {
	logStore
	raft atomic.Pointer[raft.Raft]
	snap atomic.Pointer[snapPoint] // the snapshot the store last restored
	log  *slog.Logger
}

type snapPoint struct{ index, term uint64 }

func newSnapLog(s logStore, log *slog.Logger) *snapLog { return &snapLog{logStore: s, log: log} }

// attach starts the answers for raft r (none before: raft reads its log
// to start).
func (s *snapLog) attach(r *raft.Raft) { s.raft.Store(r) }

// restored records the snapshot the state machine now holds: the one in
// snaps at index, applied up to it.
func (s *snapLog) restored(index uint64, snaps raft.SnapshotStore) {
	metas, err := snaps.List()
	if err != nil {
		return
	}
	for _, m := range metas {
		if m.Index == index {
			s.snap.Store(&snapPoint{index: m.Index, term: m.Term})
			return
		}
	}
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
			s.dropThrough(index, l.Term, sp.term)
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

// dropThrough removes the entries up to index, the snapshot's, which holds
// an entry of another term.
func (s *snapLog) dropThrough(index, stale, want uint64) {
	first, err := s.logStore.FirstIndex()
	if err == nil {
		err = s.logStore.DeleteRange(first, index)
	}
	s.log.Warn("raft log held an entry of another term at the installed snapshot's index: removed it and the entries before it",
		"index", index, "term", stale, "snapshot_term", want, "err", err)
}
