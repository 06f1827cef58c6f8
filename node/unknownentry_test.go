package node

import (
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// A committed entry this release cannot apply (here: a newer envelope
// version) stops the member before it: Fatal is called, and nothing after
// the entry is applied.
func TestUnknownEntryStopsBeforeApplying(t *testing.T) {
	fatal := make(chan error, 1)
	cfg := loneConfig(t)
	cfg.Fatal = func(err error) { fatal <- err }
	n, ctx := startLone(t, cfg)
	applied, rev := n.store.AppliedIndex(), n.store.Rev()

	n.raft.Apply([]byte{2, 0x0a, 0x00}, time.Second) // its future never completes
	select {
	case err := <-fatal:
		if !errors.Is(err, fsm.ErrUnknownEntry) {
			t.Fatalf("Fatal called with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Fatal was not called")
	}
	next, _ := fsm.Encode(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("after"), Value: []byte("v")}})
	n.raft.Apply(next, time.Second)
	// Committed, never applied: poll until raft committed both entries.
	for n.raft.LastIndex() < applied+2 || n.raft.CommitIndex() < n.raft.LastIndex() {
		if ctx.Err() != nil {
			t.Fatalf("entries not committed: last %d, commit %d", n.raft.LastIndex(), n.raft.CommitIndex())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.store.AppliedIndex(); got != applied {
		t.Fatalf("applied index %d after the unknown entry, want %d", got, applied)
	}
	if got := n.store.Rev(); got != rev {
		t.Fatalf("revision %d after the unknown entry, want %d", got, rev)
	}
}
