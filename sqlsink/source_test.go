package sqlsink

import (
	"context"
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// The store is what the sink reads from and what a member loads into.
var (
	_ EventSource = (*fsm.Store)(nil)
	_ Loader      = (*fsm.Store)(nil)
)

// A key whose lease the database lacks gets that lease back on load, with
// the shortest TTL the loading store grants: its configured minimum, not
// fsm's default. The leases the database holds keep their TTLs.
func TestLoadGivesMissingLeaseTheStoresMinimumTTL(t *testing.T) {
	const minTTL = 7 // not fsm.DefaultConfig().MinLeaseTTL
	cfg := fsm.DefaultConfig()
	cfg.MinLeaseTTL = minTTL
	if cfg.MinLeaseTTL == fsm.DefaultConfig().MinLeaseTTL {
		t.Fatalf("the test needs a minimum TTL other than the default %d", cfg.MinLeaseTTL)
	}
	newStore := func() *fsm.Store {
		s, err := fsm.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	sk := openSQLite(t, filepath.Join(t.TempDir(), "db"))
	defer sk.Close()
	rs := &testStore{t: t, s: newStore()}
	rs.apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 42, TTL: 60}})
	rs.apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 43, TTL: 30}})
	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 42}}) // rev 2
	runUntil(t, sk, rs.s, func() bool { return sk.SunkRevision() >= 2 })
	// As a database stopped in a backlog whose lease set it had read
	// already: k refers to lease 42, which the table lacks.
	if _, err := sk.DB().Exec("DELETE FROM leases WHERE id = 42"); err != nil {
		t.Fatal(err)
	}

	fresh := newStore()
	if _, err := sk.LoadInto(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id      int64
		wantTTL int64
	}{
		{42, minTTL}, // restored by the load
		{43, 30},     // as the database holds it
	} {
		l, ok := fresh.Lease(tc.id, false)
		if !ok {
			t.Errorf("lease %d: missing after the load", tc.id)
			continue
		}
		if l.TTL != tc.wantTTL {
			t.Errorf("lease %d: TTL %d after the load, want %d", tc.id, l.TTL, tc.wantTTL)
		}
	}
}
