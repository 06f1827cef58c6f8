package etcdbackend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func put(key, value string, create, mod, version, lease int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value),
		CreateRevision: create, ModRevision: mod, Version: version, Lease: lease}}
}

func del(key string, mod int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: mod}}
}

// sampleState is a compacted store: a transaction of three keys in one
// revision, overwrites, deletions (one in a transaction beside a put),
// keys on leases, and an auth store.
func sampleState() *State {
	return &State{
		Rev: 9, CompactRev: 4, ConsistentIndex: 42,
		History: []*mvccpb.Event{
			put("c", "c1", 3, 3, 1, 0), // a transaction at 3 (its third key, b, since overwritten and compacted)
			put("d", "d1", 3, 3, 1, 7),
			put("a", "a2", 2, 4, 2, 0), // visible at the compaction
			put("a", "a3", 2, 5, 3, 0),
			del("c", 6),
			put("e", "e1", 6, 6, 1, 0), // same revision as the deletion
			put("d", "d2", 3, 7, 2, 7),
			put("f", "f1", 8, 8, 1, 8),
			del("a", 9),
		},
		Leases: []Lease{{ID: 7, TTL: 60, RemainingTTL: 60}, {ID: 8, TTL: 5, RemainingTTL: 5}, {ID: 9, TTL: 300, RemainingTTL: 120}},
		Auth: Auth{Enabled: true, Revision: 6,
			Users: []*authpb.User{{Name: []byte("root"), Password: []byte("$2a$10$hash"), Roles: []string{"root"}},
				{Name: []byte("svc"), Options: &authpb.UserAddOptions{NoPassword: true}, Roles: []string{"r"}}},
			Roles: []*authpb.Role{{Name: []byte("r"), KeyPermission: []*authpb.Permission{
				{PermType: authpb.READWRITE, Key: []byte("/apisix/"), RangeEnd: []byte("/apisix0")}}}},
		},
	}
}

func TestRoundTrip(t *testing.T) {
	want := sampleState()
	path := filepath.Join(t.TempDir(), "db")
	if err := WriteDB(context.Background(), path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
	}
}

func TestRoundTripEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	if err := WriteDB(context.Background(), path, &State{Rev: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &State{Rev: 1, Auth: Auth{Revision: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
}

// TestRoundTripBatches writes more versions than one bbolt transaction
// takes, with revisions of several versions across a batch boundary.
func TestRoundTripBatches(t *testing.T) {
	st := &State{}
	for i := range 3*batchVersions + 7 {
		rev := int64(2 + i/3)
		st.History = append(st.History, put(fmt.Sprintf("%c%d", 'a'+i%3, i), "v", rev, rev, 1, 0))
	}
	st.Rev = st.History[len(st.History)-1].Kv.ModRevision
	path := filepath.Join(t.TempDir(), "db")
	if err := WriteDB(context.Background(), path, st); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.History, st.History) || got.Rev != st.Rev {
		t.Fatalf("read back %d versions up to %d, want %d up to %d", len(got.History), got.Rev, len(st.History), st.Rev)
	}
	// The sub revisions restart at 0 with each revision.
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.View(func(tx *bbolt.Tx) error {
		k, _ := tx.Bucket(bucketKey).Cursor().Last()
		main, sub, _, err := parseRevKey(k)
		if err != nil || main != st.Rev || sub != int64((len(st.History)-1)%3) {
			t.Errorf("last revision key %x: main %d sub %d (%v)", k, main, sub, err)
		}
		return nil
	})
}

func TestWriteRefusesDisorder(t *testing.T) {
	for name, st := range map[string]*State{
		"versions out of revision order":  {Rev: 3, History: []*mvccpb.Event{put("a", "1", 3, 3, 1, 0), put("b", "1", 2, 2, 1, 0)}},
		"revision above the last version": {Rev: 4, CompactRev: 2, History: []*mvccpb.Event{put("a", "1", 3, 3, 1, 0)}},
		"revision below the last version": {Rev: 2, History: []*mvccpb.Event{put("a", "1", 3, 3, 1, 0)}},
	} {
		if err := WriteDB(context.Background(), filepath.Join(t.TempDir(), "db"), st); err == nil {
			t.Errorf("%s: written", name)
		}
	}
}

func TestWriteStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	st := &State{Rev: 2, History: []*mvccpb.Event{put("a", "1", 2, 2, 1, 0)}}
	if err := WriteDB(ctx, filepath.Join(t.TempDir(), "db"), st); !errors.Is(err, context.Canceled) {
		t.Fatalf("write with a cancelled context: %v", err)
	}
}

// streamToFile writes what Stream sends as etcdctl saves it.
func streamToFile(t *testing.T, db, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lastRemaining uint64 = 1 << 62
	n, err := Stream(db, func(blob []byte, remaining uint64) error {
		if len(blob) > ChunkBytes {
			t.Errorf("chunk of %d bytes", len(blob))
		}
		if remaining > lastRemaining {
			t.Errorf("remaining bytes went up: %d after %d", remaining, lastRemaining)
		}
		lastRemaining = remaining
		_, err := f.Write(blob)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestStreamChecksum(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	st := sampleState()
	if err := WriteDB(context.Background(), db, st); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "snap.db")
	n := streamToFile(t, db, snap)
	fi, err := os.Stat(snap)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != n+32 || !HasChecksum(fi.Size()) {
		t.Fatalf("snapshot of %d bytes for a database of %d: etcdctl would refuse it", fi.Size(), n)
	}
	got, err := ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, st) {
		t.Fatalf("read back\n%+v\nwant\n%+v", got, st)
	}

	// One flipped byte in the database: the sum no longer matches.
	b, err := os.ReadFile(snap)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(bad, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(bad); !errors.Is(err, ErrChecksum) {
		t.Fatalf("damaged snapshot: %v, want %v", err, ErrChecksum)
	}
}

func TestReadNotBackend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("other")); return err })
	db.Close()
	if _, err := ReadFile(path); !errors.Is(err, ErrNotBackend) {
		t.Fatalf("bbolt file without etcd's buckets: %v, want %v", err, ErrNotBackend)
	}
	if err := os.WriteFile(path, []byte("not a database at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); err == nil {
		t.Fatal("a text file was read as a backend")
	}
}

// TestReadPendingCompaction: a file whose compaction was scheduled but not
// finished reads as etcd opens it, with the compaction done.
func TestReadPendingCompaction(t *testing.T) {
	st := &State{Rev: 6, CompactRev: 0, History: []*mvccpb.Event{
		put("a", "1", 2, 2, 1, 0),
		put("b", "1", 3, 3, 1, 0),
		put("a", "2", 2, 4, 2, 0),
		del("b", 5),
		put("c", "1", 6, 6, 1, 0),
	}}
	path := filepath.Join(t.TempDir(), "db")
	if err := WriteDB(context.Background(), path, st); err != nil {
		t.Fatal(err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyScheduledCompact, revKey(5, 0, false)) })
	db.Close()
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []*mvccpb.Event{put("a", "2", 2, 4, 2, 0), put("c", "1", 6, 6, 1, 0)}
	if got.CompactRev != 5 || got.Rev != 6 || !reflect.DeepEqual(got.History, want) {
		t.Fatalf("pending compaction at 5: compact %d rev %d history %v", got.CompactRev, got.Rev, got.History)
	}
}

func TestKeysAt(t *testing.T) {
	st := sampleState()
	for _, tc := range []struct {
		rev  int64
		want []string
	}{
		{4, []string{"a=a2", "c=c1", "d=d1"}},
		{6, []string{"a=a3", "d=d1", "e=e1"}},
		{9, []string{"d=d2", "e=e1", "f=f1"}},
	} {
		var got []string
		for _, kv := range st.KeysAt(tc.rev) {
			got = append(got, string(kv.Key)+"="+string(kv.Value))
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("keys at %d: %v, want %v", tc.rev, got, tc.want)
		}
	}
}

func TestLeaseCodec(t *testing.T) {
	for _, l := range []Lease{{ID: 1, TTL: 10, RemainingTTL: 10}, {ID: 1<<62 + 5, TTL: 9000000000, RemainingTTL: 3}} {
		got, err := unmarshalLease(marshalLease(l))
		if err != nil || got != l {
			t.Errorf("lease %+v read back as %+v (%v)", l, got, err)
		}
	}
	if _, err := unmarshalLease([]byte{0x08}); err == nil {
		t.Error("a truncated lease was decoded")
	}
}

// TestReadLocked: a database another process holds (a running etcd's) is
// refused after a short wait, with what to do instead.
func TestReadLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	if err := WriteDB(context.Background(), path, &State{Rev: 1}); err != nil {
		t.Fatal(err)
	}
	holder, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	defer func(d time.Duration) { openTimeout = d }(openTimeout)
	openTimeout = 100 * time.Millisecond
	if _, err := ReadFile(path); !errors.Is(err, bbolt.ErrTimeout) || !strings.Contains(err.Error(), "etcdctl snapshot save") {
		t.Fatalf("reading a held database: %v", err)
	}
}
