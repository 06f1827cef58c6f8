package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// unsinkableEntries are the entries of TestApplyGuardKeepsTheSinkGoing,
// by name.
func unsinkableEntries() map[string]*pb.InternalRaftRequest {
	return map[string]*pb.InternalRaftRequest{
		"empty key":      {Put: &pb.PutRequest{Value: []byte("v")}},
		"key too long":   {Put: &pb.PutRequest{Key: []byte(strings.Repeat("k", 5000)), Value: []byte("v")}},
		"txn, empty key": {Txn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{}}}}}},
		"ttl too large":  {LeaseGrant: &pb.LeaseGrantRequest{ID: 9, TTL: fsm.MaxLeaseTTL + 1}},
	}
}

// An entry that breaks what the sink relies on (empty key, a key the
// database cannot store, a lease TTL out of bounds), committed by hand as
// raft would deliver it from a member that skipped validation, is refused
// by apply without a revision, and the sink goes on with the next write.
// Without the apply guard the empty key stops the SQLite sink for good
// (NOT NULL constraint failed: kv.key).
func TestApplyGuardKeepsTheSinkGoing(t *testing.T) {
	cfg := loneConfig(t)
	sc := sqlsink.DefaultConfig()
	sc.SQLitePath = filepath.Join(cfg.DataDir, "etcdsql.db")
	cfg.Sink = &sc
	cfg.FSM.MaxKeyBytes = sqlsink.MaxKeyBytes
	n, ctx := startLone(t, cfg)
	rev := n.store.Rev()
	for name, bad := range unsinkableEntries() {
		data, err := fsm.Encode(bad)
		if err != nil {
			t.Fatal(err)
		}
		f := n.raft.Apply(data, 5*time.Second)
		if err := f.Error(); err != nil {
			t.Fatalf("%s: commit: %v", name, err)
		}
		if res, ok := f.Response().(*fsm.Result); !ok || res.Err == nil {
			t.Fatalf("%s: apply accepted it: %+v", name, f.Response())
		}
		if got := n.store.Rev(); got != rev {
			t.Fatalf("%s: revision %d after the refused entry, want %d", name, got, rev)
		}
	}
	if _, ok := n.store.Lease(9, false); ok {
		t.Fatal("the lease with a TTL out of bounds exists")
	}
	resp, err := (leaderSide{n}).Put(ctx, &pb.PutRequest{Key: []byte("after"), Value: []byte("v")})
	if err != nil {
		t.Fatalf("a valid write after the refused entries: %v", err)
	}
	if resp.Header.Revision != rev+1 {
		t.Fatalf("revision %d, want %d", resp.Header.Revision, rev+1)
	}
	// Acknowledged with sync acks: in the database.
	if sunk := n.sink.SunkRevision(); sunk < rev+1 {
		t.Fatalf("the sink stored up to revision %d, want %d", sunk, rev+1)
	}
	if err := n.SinkHealthy(); err != nil {
		t.Fatalf("sink: %v", err)
	}
}

// loneConfig is a one-member node's configuration with fast raft timing.
func loneConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.Name = "n1"
	cfg.DataDir = t.TempDir()
	cfg.PeerAddr = "127.0.0.1:0"
	cfg.HeartbeatTimeout, cfg.ElectionTimeout = 100*time.Millisecond, 100*time.Millisecond
	return cfg
}

// startLone starts a one-member node, waits until it leads, writes one
// key, and closes it when the test ends. ctx bounds the test.
func startLone(t *testing.T, cfg Config) (*Node, context.Context) {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if err := n.lead.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := (leaderSide{n}).Put(ctx, &pb.PutRequest{Key: []byte("before"), Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	return n, ctx
}
