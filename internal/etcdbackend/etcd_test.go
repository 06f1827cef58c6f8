package etcdbackend

import (
	"errors"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/difftest"
)

// TestReadEtcdSnapshot reads a snapshot `etcdctl snapshot save` took of a
// real etcd 3.4 and compares it with what that etcd answers: the key space
// at every revision since the compaction, the events a watch from an old
// revision gets, and the leases.
func TestReadEtcdSnapshot(t *testing.T) {
	e := difftest.SnapshotEtcd(t, "/backup/")
	cli, b, path := e.Client, e.Backup, e.Path

	st, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rev != b.Rev || st.CompactRev != b.CompactRev {
		t.Fatalf("read revision %d compacted at %d, etcd is at %d compacted at %d", st.Rev, st.CompactRev, b.Rev, b.CompactRev)
	}
	if status := difftest.ReadSnapshotStatus(t, path); status.Revision != st.Rev {
		t.Errorf("etcdctl snapshot status says revision %d, ReadFile %d", status.Revision, st.Rev)
	}
	for rev := b.CompactRev; rev <= b.Rev; rev++ {
		want, _ := difftest.RangeAt(t, cli, b.Prefix, rev)
		if got := st.KeysAt(rev); !reflect.DeepEqual(got, want) {
			t.Errorf("keys at %d:\n got %v\nwant %v", rev, got, want)
		}
	}
	want := difftest.WatchFrom(t, cli, b.Prefix, b.CompactRev+1, b.Rev)
	var got []*mvccpb.Event
	for _, ev := range st.History {
		if ev.Kv.ModRevision > b.CompactRev {
			got = append(got, ev)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("history after the compaction:\n got %v\nwant %v", got, want)
	}
	ttls := difftest.LeaseTTLs(t, cli)
	if len(st.Leases) != len(ttls) {
		t.Errorf("read %d leases, etcd has %d", len(st.Leases), len(ttls))
	}
	for _, l := range st.Leases {
		if ttls[clientv3.LeaseID(l.ID)] != l.TTL || l.RemainingTTL != l.TTL {
			t.Errorf("lease %x: TTL %d remaining %d, etcd granted %d", l.ID, l.TTL, l.RemainingTTL, ttls[clientv3.LeaseID(l.ID)])
		}
	}
	if st.Auth.Revision != 1 || st.Auth.Enabled || len(st.Auth.Users) != 0 {
		t.Errorf("auth store of an etcd that never used it: %+v", st.Auth)
	}

	// The state loads into a store as a rebuild from the database does,
	// and the store answers ranges at every revision since the compaction
	// as etcd does.
	store, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var leases []fsm.LeaseInfo
	for _, l := range st.Leases {
		leases = append(leases, fsm.LeaseInfo{ID: l.ID, TTL: l.TTL})
	}
	var changes []fsm.Change
	for i, ev := range st.History {
		sub := int32(0)
		if i > 0 && st.History[i-1].Kv.ModRevision == ev.Kv.ModRevision {
			sub = changes[i-1].Sub + 1
		}
		changes = append(changes, fsm.Change{KV: ev.Kv, Sub: sub, Deleted: ev.Type == mvccpb.DELETE})
	}
	if err := store.Load(st.Rev, st.CompactRev, leases, changes, fsm.AuthState{}); err != nil {
		t.Fatal(err)
	}
	if rev, compact := store.Revs(); rev != b.Rev || compact != b.CompactRev {
		t.Errorf("store loaded from the file at revision %d compacted at %d, etcd at %d compacted at %d", rev, compact, b.Rev, b.CompactRev)
	}
	for rev := b.CompactRev; rev <= b.Rev; rev++ {
		want, _ := difftest.RangeAt(t, cli, b.Prefix, rev)
		got, err := store.Range(&pb.RangeRequest{Key: []byte(b.Prefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(b.Prefix)), Revision: rev})
		if err != nil || !reflect.DeepEqual(got.Kvs, want) {
			t.Errorf("store loaded from the file, keys at %d (%v):\n got %v\nwant %v", rev, err, got.GetKvs(), want)
		}
	}
	if _, err := store.Range(&pb.RangeRequest{Key: []byte(b.Prefix), Revision: b.CompactRev - 1}); !errors.Is(err, fsm.ErrCompacted) {
		t.Errorf("store loaded from the file, range below the compaction: %v", err)
	}
}
