package sqlsink

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
)

type testStore struct {
	t   testing.TB
	s   *fsm.Store
	idx uint64
}

func newTestStore(t testing.TB) *testStore {
	s, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return &testStore{t: t, s: s}
}

func (r *testStore) apply(req *pb.InternalRaftRequest) *fsm.Result {
	r.t.Helper()
	data, err := fsm.Encode(req)
	if err != nil {
		r.t.Fatal(err)
	}
	r.idx++
	res := r.s.Apply(r.idx, data)
	if res.Err != nil {
		r.t.Fatalf("apply %v: %v", req, res.Err)
	}
	return res
}

func openSQLite(t *testing.T, path string) *Sink {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SQLitePath = path
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runUntil runs the sink until cond holds (within 10 s), then stops it.
func runUntil(t *testing.T, sk *Sink, st *fsm.Store, cond func() bool) {
	t.Helper()
	runUntilWithin(t, 10*time.Second, sk, st, cond)
}

func runUntilWithin(t *testing.T, within time.Duration, sk *Sink, st *fsm.Store, cond func() bool) {
	t.Helper()
	runAtTermUntil(t, 1, within, sk, st, cond)
}

// runAtTermUntil runs the sink as the leader of raft term term.
func runAtTermUntil(t *testing.T, term uint64, within time.Duration, sk *Sink, st *fsm.Store, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sk.Run(ctx, st, term) }()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("sink did not reach the condition (at revision %d, health %v)", sk.SunkRevision(), sk.Healthy())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sink run: %v", err)
	}
}

// A key put and then deleted in one revision (two nested txns, which etcd's
// overlap check allows) must not come back after a compaction past that
// revision and a rebuild from the database.
func TestCompactionDropsPutDeletedInTheSameRevision(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	sk := openSQLite(t, path)
	defer sk.Close()
	rs := newTestStore(t)
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}}
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}}
	rs.apply(&pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put}}}},
		{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{del}}}},
	}}}) // rev 2: put k, delete k
	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("other"), Value: []byte("x")}}) // rev 3
	// As node.Compact does: compact only what the database holds.
	runUntil(t, sk, rs.s, func() bool { return sk.SunkRevision() >= 3 })
	rs.apply(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 3}})
	if resp, _ := rs.s.Range(&pb.RangeRequest{Key: []byte("k")}); len(resp.Kvs) != 0 {
		t.Fatalf("store: k is live: %v", resp.Kvs)
	}
	runUntil(t, sk, rs.s, func() bool {
		st, err := sk.State(context.Background())
		return err == nil && st.CompactRev == 3 && st.Revision == 3
	})

	fresh, _ := fsm.New(fsm.DefaultConfig())
	if _, err := sk.LoadInto(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	resp, err := fresh.Range(&pb.RangeRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 0 {
		t.Errorf("after compaction and rebuild from the database, deleted key k is live again: %v", resp.Kvs)
	}
	if fresh.Digest() != rs.s.Digest() {
		t.Errorf("rebuilt store differs from the original")
	}
}

// The database's applied index belongs to one raft log. After a rebuild
// from the database the new raft log starts at 1 again, but the sink never
// lowers meta.applied_index, so after a restart WaitIndex returns at once
// for entries that are not in the database (sync acks become async).
func TestAppliedIndexStartsOverAfterRebuild(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	// The old cluster: 50 entries sunk.
	sk := openSQLite(t, path)
	if err := sk.SetClusterID(context.Background(), 7); err != nil {
		t.Fatal(err)
	}
	old := newTestStore(t)
	for i := 0; i < 50; i++ {
		old.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("v")}})
	}
	runUntil(t, sk, old.s, func() bool { return sk.sunkIndex.Load() >= 50 })
	sk.Close()

	// Rebuild: a member with no raft state loads the database, and its
	// raft log starts afresh.
	sk = openSQLite(t, path)
	rs := newTestStore(t)
	if _, err := sk.LoadInto(context.Background(), rs.s); err != nil {
		t.Fatal(err)
	}
	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("b"), Value: []byte("v")}}) // index 1
	runUntil(t, sk, rs.s, func() bool { return sk.sunkIndex.Load() >= 1 })
	sk.Close()

	// Restart of the rebuilt member: its sink reads meta.applied_index.
	sk = openSQLite(t, path)
	defer sk.Close()
	st, _ := sk.State(context.Background())
	if st.AppliedIndex != 1 {
		t.Errorf("meta applied_index = %d after the rebuilt cluster sank index 1; want 1", st.AppliedIndex)
	}
	// Index 2 is not in the database: nothing runs the sink.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := sk.WaitIndex(ctx, 2); err == nil {
		t.Errorf("WaitIndex(2) returned at once though raft index 2 was never written to the database")
	}
}

// A batch that ends below the store's revision (Complete=false) writes the
// lease set of the store's current state. A rebuild from that high-water
// mark then has a key attached to a lease the database says does not
// exist: the key never expires.
func TestPartialBatchKeepsLeasesOfStoredKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	sk := openSQLite(t, path)
	defer sk.Close()
	// Make every write of revision 3 fail, so the sink stops after the
	// batch that ends at revision 2 (as if the process died there).
	if _, err := sk.DB().Exec(`CREATE TRIGGER fail_from_rev3 BEFORE INSERT ON kv_log WHEN NEW.revision >= 3 BEGIN SELECT RAISE(ABORT, 'injected failure'); END`); err != nil {
		t.Fatal(err)
	}
	sk.cfg.MaxBatchRevisions = 1
	rs := newTestStore(t)
	rs.apply(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 42, TTL: 60}})
	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 42}}) // rev 2
	rs.apply(&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 42}})                          // rev 3: delete k
	runUntil(t, sk, rs.s, func() bool { return sk.SunkRevision() >= 2 })

	fresh, _ := fsm.New(fsm.DefaultConfig())
	st, err := sk.LoadInto(context.Background(), fresh)
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 2 {
		t.Fatalf("database high-water mark %d, want 2", st.Revision)
	}
	resp, _ := fresh.Range(&pb.RangeRequest{Key: []byte("k")})
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease != 42 {
		t.Fatalf("k at revision 2: %v", resp.Kvs)
	}
	if _, ok := fresh.Lease(42, false); !ok {
		t.Errorf("database at revision 2 holds key k attached to lease 42, but no lease 42: k can never expire")
	}
}

// forEachDatabase runs f as a subtest on a fresh sink of each system of
// record: a MariaDB database and a SQLite file.
func forEachDatabase(t *testing.T, f func(t *testing.T, sk *Sink)) {
	for _, tc := range []struct {
		name string
		cfg  func(*Config)
	}{
		{"mariadb", func(c *Config) { c.MySQLDSN = mysqltest.NewDatabase(t) }},
		{"sqlite", func(c *Config) { c.SQLitePath = filepath.Join(t.TempDir(), "db") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tc.cfg(&cfg)
			sk, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sk.Close()
			f(t, sk)
		})
	}
}

// With async acks the sink writes at most one batch per AsyncInterval
// while writes keep coming (a burst goes into few transactions), and the
// first write after a quiet spell at once. Without the interval every
// write of the same burst gets its own transaction.
func TestAsyncIntervalBatchesBursts(t *testing.T) {
	for _, interval := range []time.Duration{0, 100 * time.Millisecond} {
		t.Run(interval.String(), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.SQLitePath = filepath.Join(t.TempDir(), "db")
			cfg.Ack = AckAsync
			cfg.AsyncInterval = interval
			sk, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sk.Close()
			rs := newTestStore(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sk.Run(ctx, rs.s, 1) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("sink run: %v", err)
				}
			}()
			batches := func() int { return int(testutil.ToFloat64(sk.metrics.batches.WithLabelValues("ok"))) }
			put := func(k string) int64 {
				return rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}}).Put.Header.Revision
			}
			// Quiet until now: the first write is not held back.
			time.Sleep(2 * interval)
			start := time.Now()
			wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
			defer wcancel()
			if err := sk.WaitRevision(wctx, put("first")); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); interval > 0 && d > interval/2 {
				t.Errorf("the first write after a quiet spell took %v to reach the database (interval %v)", d, interval)
			}
			before := batches()
			var last int64
			const burst = 40
			for i := 0; i < burst; i++ {
				last = put(fmt.Sprintf("burst/%d", i))
				time.Sleep(2 * time.Millisecond)
			}
			if err := sk.WaitRevision(wctx, last); err != nil {
				t.Fatal(err)
			}
			n := batches() - before
			if interval > 0 && n > 3 {
				t.Errorf("a burst of %d writes over about %v took %d transactions with an interval of %v; want at most 3", burst, burst*2*time.Millisecond, n, interval)
			}
			if interval == 0 && n < burst/4 {
				t.Errorf("a burst of %d writes took only %d transactions without an interval", burst, n)
			}
		})
	}
}

// proposingStore is a store whose leader's proposals the test counts.
type proposingStore struct {
	*fsm.Store
	proposed, settled atomic.Uint64
}

func (p *proposingStore) Proposals() (proposed, settled uint64) {
	settled = p.settled.Load()
	return p.proposed.Load(), settled
}

// TestSyncBatchWaitsForProposalsInFlight checks the sync batches' linger:
// a batch that would start while proposed entries are still on their way
// waits for them and carries them, and an entry that never arrives holds a
// batch back no longer than the last batch took.
func TestSyncBatchWaitsForProposalsInFlight(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MySQLDSN = mysqltest.NewDatabase(t)
	cfg.SyncLinger = time.Minute // the last batch's time bounds it here
	sk, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	rs := newTestStore(t)
	src := &proposingStore{Store: rs.s}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sk.Run(ctx, src, 1) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sink run: %v", err)
		}
	}()
	batches := func() int { return int(testutil.ToFloat64(sk.metrics.batches.WithLabelValues("ok"))) }
	lingered := func() float64 { return testutil.ToFloat64(sk.metrics.lingered) }
	// put applies one of the proposals, counting it settled first, as
	// the member does.
	put := func(k string) int64 {
		src.settled.Add(1)
		return rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}}).Put.Header.Revision
	}
	wait := func(rev int64) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		defer wcancel()
		if err := sk.WaitRevision(wctx, rev); err != nil {
			t.Fatalf("revision %d: %v", rev, err)
		}
	}
	wait(0) // the sink has checked the database

	// Nothing in flight: written at once. Another session holds the
	// fence's row for 300 ms, so this batch takes that long (and the
	// next one may wait as long). The hold stays well under the
	// session's lock wait timeout (1 s): past it, the sink would take
	// the holder for a stale leader's writer.
	lock, err := sk.DB().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	tx, err := lock.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fence int64
	if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ? FOR UPDATE", metaLeaderTerm).Scan(&fence); err != nil {
		t.Fatal(err)
	}
	src.proposed.Add(1)
	rev := put("alone")
	time.Sleep(300 * time.Millisecond)
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	wait(rev)
	if lingered() != 0 {
		t.Fatalf("a batch was held back %vs with nothing in flight", lingered())
	}

	// Two in flight: the first to arrive waits for the second, and one
	// transaction carries both.
	before := batches()
	src.proposed.Add(2)
	put("first")
	time.Sleep(20 * time.Millisecond)
	wait(put("second"))
	if n := batches() - before; n != 1 {
		t.Errorf("two entries proposed together took %d transactions, want 1", n)
	}
	if lingered() == 0 {
		t.Error("the linger metric did not count the wait")
	}

	// One in flight that never arrives: the batch waits no longer than
	// the last one took (a few milliseconds), not SyncLinger.
	src.proposed.Add(2)
	start := time.Now()
	wait(put("third"))
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an entry that never arrived held the batch back %v", d)
	}
}
