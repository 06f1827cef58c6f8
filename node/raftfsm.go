package node

import (
	"errors"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/release"
)

// raftFSM adapts fsm.Store to raft.FSM. It stays thin: the store decides.
type raftFSM struct{ n *Node }

// raft hands a BatchingFSM its configuration entries in the batch too
// (as skipped indexes, which move the applied index so that reads waiting
// on an index behind one do not wait for ever); it calls no
// ConfigurationStore then.
var _ raft.BatchingFSM = raftFSM{}

func (f raftFSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies a batch of committed entries (commands and
// configuration changes) in one call to the store, which announces the
// batch once: the sink writes it in one transaction and every waiter wakes
// once.
func (f raftFSM) ApplyBatch(logs []*raft.Log) []interface{} {
	entries := make([]fsm.Entry, len(logs))
	var lastCommand *raft.Log
	for i, l := range logs {
		entries[i] = fsm.Entry{Index: l.Index, Data: l.Data, Skip: l.Type != raft.LogCommand}
		if l.Type == raft.LogCommand {
			lastCommand = l
		}
	}
	if lastCommand != nil {
		f.n.lead.nudge(lastCommand)
	}
	// Counted before the store announces the batch: a sink that wakes
	// on that announcement must find them settled.
	f.n.proposals.applied(logs)
	results := f.n.store.ApplyBatch(entries)
	out := make([]interface{}, len(logs))
	now := time.Now()
	for i, res := range results {
		if res == nil {
			continue
		}
		out[i] = res
		if errors.Is(res.Err, fsm.ErrUnknownEntry) {
			f.n.stopApplying(logs[i].Index, res.Err)
			return out
		}
		if g := res.LeaseGrant; g != nil && res.Err == nil {
			f.n.lessor.granted(g.ID, logs[i].Index, g.TTL, now)
		}
		if res.Import != nil && res.Err == nil && !f.n.store.Importing() {
			// An import finished: its leases' clocks start now.
			f.n.lessor.started(logs[i].Index)
		}
	}
	return out
}

func (f raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{f.n.store.Snapshot()}, nil
}

func (f raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.n.store.Restore(rc); err != nil {
		return err
	}
	f.n.logStore.restored(f.n.store.AppliedIndex(), f.n.snaps)
	return nil
}

type fsmSnapshot struct{ snap *fsm.Snapshot }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.snap.WriteTo(sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// stopApplying stops this member before a committed entry it cannot
// apply: it says so, calls Config.Fatal, and holds the apply goroutine
// until the node closes, so nothing after the entry is applied and this
// member's copy never diverges from the others'.
func (n *Node) stopApplying(idx uint64, err error) {
	n.log.Error("stopping: this member cannot apply a committed entry, which a newer release may have written; "+
		"it applies nothing from it on, so its copy does not diverge: run a release that knows this entry",
		"index", idx, "release", release.Name, "err", err)
	if n.cfg.Fatal != nil {
		n.cfg.Fatal(err)
	}
	<-n.stop
}
