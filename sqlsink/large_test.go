package sqlsink

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// A backlog far larger than one SQL packet (MariaDB's default
// max_allowed_packet is 16 MiB) is written in bounded transactions and
// statements: 40 values of 1 MiB whose bytes all need escaping, then one
// revision that deletes 5,000 keys of 3,000 bytes. A rebuild from the
// database then equals the store.
func TestLargeBacklogIsWrittenInBoundedBatches(t *testing.T) {
	if raceEnabled {
		t.Skip("scale test: runs in the plain (non-race) pass of make test")
	}
	forEachDatabase(t, func(t *testing.T, sk *Sink) {
		rs := newTestStore(t)
		value := bytes.Repeat([]byte("'\\\x00\"\n\r\x1a"), (1<<20)/7)
		for i := 0; i < 40; i++ {
			rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(fmt.Sprintf("/big/%02d", i)), Value: value}})
		}
		long := bytes.Repeat([]byte("k"), 2990)
		for i := 0; i < 5000; i++ {
			rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: fmt.Appendf(append([]byte("/long/"), long...), "%04d", i)}})
		}
		rs.apply(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("/long/"), RangeEnd: []byte("/long0")}})
		rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("/last"), Value: []byte("v")}})
		want := rs.s.Rev()
		runUntilWithin(t, time.Minute, sk, rs.s, func() bool { return sk.SunkRevision() >= want })
		if err := sk.Healthy(); err != nil {
			t.Fatalf("sink unhealthy after the backlog: %v", err)
		}

		fresh, _ := fsm.New(fsm.DefaultConfig())
		st, err := sk.LoadInto(context.Background(), fresh)
		if err != nil {
			t.Fatal(err)
		}
		if st.Revision != want || fresh.Rev() != want {
			t.Fatalf("database at revision %d, loaded store at %d; want %d", st.Revision, fresh.Rev(), want)
		}
		all := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
		got, err := fresh.Range(all)
		if err != nil {
			t.Fatal(err)
		}
		exp, err := rs.s.Range(all)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Kvs) != len(exp.Kvs) || len(got.Kvs) != 41 {
			t.Fatalf("loaded %d keys, store has %d (want 41)", len(got.Kvs), len(exp.Kvs))
		}
		for i := range exp.Kvs {
			if !bytes.Equal(got.Kvs[i].Key, exp.Kvs[i].Key) || !bytes.Equal(got.Kvs[i].Value, exp.Kvs[i].Value) ||
				got.Kvs[i].ModRevision != exp.Kvs[i].ModRevision || got.Kvs[i].Version != exp.Kvs[i].Version {
				t.Fatalf("key %d: loaded %q@%d, store %q@%d", i, got.Kvs[i].Key, got.Kvs[i].ModRevision, exp.Kvs[i].Key, exp.Kvs[i].ModRevision)
			}
		}
	})
}

// A batch too big for the write timeout (one revision that deletes 3,000
// keys, against a 5 ms timeout) is retried with a longer timeout while the
// database answers, instead of timing out forever.
func TestBatchOverTheTimeoutIsRetriedWithALongerOne(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SQLitePath = filepath.Join(t.TempDir(), "db")
	cfg.WriteTimeout = 5 * time.Millisecond
	cfg.RetryMin = time.Millisecond
	sk, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	rs := newTestStore(t)
	for i := 0; i < 3000; i++ {
		rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: fmt.Appendf(nil, "/k/%04d", i), Value: []byte("v")}})
	}
	// The puts go in batches that fit the timeout, as the sink keeps up.
	runUntilWithin(t, time.Minute, sk, rs.s, func() bool { return sk.SunkRevision() == rs.s.Rev() })
	rs.apply(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("/k/"), RangeEnd: []byte("/k0")}})
	want := rs.s.Rev()
	runUntilWithin(t, time.Minute, sk, rs.s, func() bool { return sk.SunkRevision() == want })
	var n int
	if err := sk.DB().QueryRow("SELECT COUNT(*) FROM kv").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d keys left in kv after the revision that deleted them all", n)
	}
}
