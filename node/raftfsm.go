package node

import (
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/fsm"
)

// raftFSM adapts fsm.Store to raft.FSM. It stays thin: the store decides.
type raftFSM struct{ n *Node }

var (
	_ raft.FSM                = raftFSM{}
	_ raft.ConfigurationStore = raftFSM{}
)

func (f raftFSM) Apply(l *raft.Log) interface{} {
	f.n.lead.nudge(l)
	res := f.n.store.Apply(l.Index, l.Data)
	if g := res.LeaseGrant; g != nil && res.Err == nil {
		f.n.lessor.granted(g.ID, l.Index, g.TTL, time.Now())
	}
	return res
}

// StoreConfiguration moves the applied index over configuration entries so
// that reads waiting on an index behind one do not wait forever.
func (f raftFSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.n.store.SkipIndex(index)
}

func (f raftFSM) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{f.n.store.Snapshot()}, nil
}

func (f raftFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.n.store.Restore(rc)
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
