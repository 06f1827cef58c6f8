package difftest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdctlBinary is etcd 3.4's etcdctl, used for snapshots. The environment
// variable DIFFTEST_ETCDCTL overrides it.
var EtcdctlBinary = "/usr/bin/etcdctl"

// snapshotWait bounds each step of a backup workload or comparison.
const snapshotWait = 20 * time.Second

// Etcdctl runs etcdctl (API 3) with args and returns its output; a
// failure fails the test with the output.
func Etcdctl(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := EtcdctlErr(args...)
	if err != nil {
		t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
	}
	return out
}

// EtcdctlErr runs etcdctl (API 3) with args and returns its output and
// how it ended.
func EtcdctlErr(args ...string) ([]byte, error) {
	bin := EtcdctlBinary
	if env := os.Getenv("DIFFTEST_ETCDCTL"); env != "" {
		bin = env
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	return cmd.CombinedOutput()
}

// SaveSnapshot saves a snapshot of the member at endpoint to path with
// `etcdctl snapshot save`.
func SaveSnapshot(t testing.TB, endpoint, path string) {
	t.Helper()
	Etcdctl(t, "--endpoints", endpoint, "snapshot", "save", path)
}

// RestoreSnapshot turns a snapshot file into a new data directory with
// `etcdctl snapshot restore`, for the member StartEtcdWith starts
// (EtcdOptions.DataDir), and returns the directory.
func RestoreSnapshot(t testing.TB, path string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "restored")
	const peer = "http://127.0.0.1:2380" // the member's record only: it runs alone
	Etcdctl(t, "snapshot", "restore", path, "--data-dir", dir, "--name", "difftest",
		"--initial-cluster", "difftest="+peer, "--initial-advertise-peer-urls", peer)
	return dir
}

// SnapshotStatus is what `etcdctl snapshot status -w json` prints.
type SnapshotStatus struct {
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
}

// ReadSnapshotStatus runs `etcdctl snapshot status` on a snapshot file.
func ReadSnapshotStatus(t testing.TB, path string) SnapshotStatus {
	t.Helper()
	out := Etcdctl(t, "snapshot", "status", path, "-w", "json")
	var s SnapshotStatus
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("etcdctl snapshot status: %v\n%s", err, out)
	}
	return s
}

// Backup is what WriteBackupWorkload wrote.
type Backup struct {
	Prefix string
	// CompactRev is the revision compacted at; Rev the last revision
	// written (under Prefix).
	CompactRev, Rev int64
	// Leases are the leases granted, by ID.
	Leases []clientv3.LeaseID
}

// WriteBackupWorkload writes under prefix what a backup must keep: keys
// overwritten and deleted, transactions that write several keys (one of
// them 100 keys of 4 KiB, and one that puts and deletes) in one revision, keys on a lease and a lease
// without keys, a compaction, and more of each after it.
func WriteBackupWorkload(t testing.TB, cli *clientv3.Client, prefix string) Backup {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
	defer cancel()
	b := Backup{Prefix: prefix}
	must := func(r any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("backup workload: %v", err)
		}
	}
	k := func(s string) string { return prefix + s }
	grant := func(ttl int64) clientv3.LeaseID {
		l, err := cli.Grant(ctx, ttl)
		must(l, err)
		b.Leases = append(b.Leases, l.ID)
		return l.ID
	}
	long := grant(3600)
	grant(1800) // a lease without keys
	must(cli.Put(ctx, k("a"), "a1"))
	// 100 keys of 4 KiB in one revision: the file spans many chunks.
	var big []clientv3.Op
	for i := range 100 {
		big = append(big, clientv3.OpPut(k(fmt.Sprintf("big/%03d", i)), strings.Repeat(string(rune('a'+i%26)), 4096)))
	}
	must(cli.Txn(ctx).Then(big...).Commit())
	must(cli.Txn(ctx).Then(clientv3.OpPut(k("b"), "b1"), clientv3.OpPut(k("c"), "c1"), clientv3.OpPut(k("d"), "d1")).Commit())
	must(cli.Put(ctx, k("a"), "a2"))
	must(cli.Delete(ctx, k("b")))
	must(cli.Put(ctx, k("e"), "e1", clientv3.WithLease(long)))
	must(cli.Txn(ctx).Then(clientv3.OpPut(k("c"), "c2"), clientv3.OpDelete(k("d"))).Commit())
	r, err := cli.Put(ctx, k("f"), "f1")
	must(r, err)
	must(cli.Put(ctx, k("a"), "a3"))
	b.CompactRev = r.Header.Revision
	must(cli.Compact(ctx, b.CompactRev, clientv3.WithCompactPhysical()))
	must(cli.Put(ctx, k("g"), "g1", clientv3.WithLease(long)))
	must(cli.Txn(ctx).Then(clientv3.OpPut(k("h"), "h1"), clientv3.OpPut(k("i"), "i1"), clientv3.OpPut(k("a"), "a4")).Commit())
	must(cli.Delete(ctx, k("f")))
	must(cli.Put(ctx, k("d"), "d2"))
	r, err = cli.Put(ctx, k("c"), "c3")
	must(r, err)
	b.Rev = r.Header.Revision
	return b
}

// RangeAt returns every key under prefix at revision rev (0: current),
// with the header revision.
func RangeAt(t testing.TB, cli *clientv3.Client, prefix string, rev int64) ([]*mvccpb.KeyValue, int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
	defer cancel()
	r, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	if err != nil {
		t.Fatalf("range %q at %d: %v", prefix, rev, err)
	}
	return r.Kvs, r.Header.Revision
}

// WatchFrom watches prefix from revision from and returns the events up to
// revision upTo (which must hold an event under prefix), in order.
func WatchFrom(t testing.TB, cli *clientv3.Client, prefix string, from, upTo int64) []*mvccpb.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
	defer cancel()
	var evs []*mvccpb.Event
	for resp := range cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			t.Fatalf("watch %q from %d: %v", prefix, from, err)
		}
		for _, ev := range resp.Events {
			evs = append(evs, (*mvccpb.Event)(ev))
			if ev.Kv.ModRevision >= upTo {
				return evs
			}
		}
	}
	t.Fatalf("watch %q from %d: ended before revision %d (%d events)", prefix, from, upTo, len(evs))
	return nil
}

// LeaseTTLs returns every lease's granted TTL, by ID.
func LeaseTTLs(t testing.TB, cli *clientv3.Client) map[clientv3.LeaseID]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
	defer cancel()
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatalf("lease list: %v", err)
	}
	out := make(map[clientv3.LeaseID]int64)
	for _, l := range ls.Leases {
		ttl, err := cli.TimeToLive(ctx, l.ID)
		if err != nil {
			t.Fatalf("lease %x time to live: %v", l.ID, err)
		}
		out[l.ID] = ttl.GrantedTTL
	}
	return out
}

// CompareBackup checks that got answers as want does for what b wrote:
// the key space at the current revision and at every revision since the
// compaction (key, value, create and mod revision, version, lease), a
// range below the compaction (refused as compacted by both), watches from
// old revisions (the same events in order), and the leases with their
// granted TTLs.
func CompareBackup(t testing.TB, want, got *clientv3.Client, b Backup) {
	t.Helper()
	wantKVs, wantRev := RangeAt(t, want, b.Prefix, 0)
	gotKVs, gotRev := RangeAt(t, got, b.Prefix, 0)
	if gotRev != wantRev {
		t.Errorf("current revision %d, want %d", gotRev, wantRev)
	}
	if !reflect.DeepEqual(gotKVs, wantKVs) {
		t.Errorf("key space at the current revision:\n got %v\nwant %v", gotKVs, wantKVs)
	}
	for rev := b.CompactRev; rev <= b.Rev; rev++ {
		wantKVs, _ := RangeAt(t, want, b.Prefix, rev)
		gotKVs, _ := RangeAt(t, got, b.Prefix, rev)
		if !reflect.DeepEqual(gotKVs, wantKVs) {
			t.Errorf("key space at revision %d:\n got %v\nwant %v", rev, gotKVs, wantKVs)
		}
	}
	for _, c := range []*clientv3.Client{want, got} {
		ctx, cancel := context.WithTimeout(context.Background(), snapshotWait)
		_, err := c.Get(ctx, b.Prefix, clientv3.WithPrefix(), clientv3.WithRev(b.CompactRev-1))
		cancel()
		if err == nil || err.Error() != "etcdserver: mvcc: required revision has been compacted" {
			t.Errorf("range below the compaction (%d): %v, want compacted", b.CompactRev-1, err)
		}
	}
	for _, from := range []int64{b.CompactRev + 1, (b.CompactRev + b.Rev) / 2} {
		wantEvs := WatchFrom(t, want, b.Prefix, from, b.Rev)
		gotEvs := WatchFrom(t, got, b.Prefix, from, b.Rev)
		if !reflect.DeepEqual(gotEvs, wantEvs) {
			t.Errorf("watch from %d:\n got %v\nwant %v", from, gotEvs, wantEvs)
		}
	}
	wantLeases, gotLeases := LeaseTTLs(t, want), LeaseTTLs(t, got)
	for _, id := range b.Leases {
		if gotLeases[id] != wantLeases[id] || wantLeases[id] == 0 {
			t.Errorf("lease %x: granted TTL %d, want %d", id, gotLeases[id], wantLeases[id])
		}
	}
}

// EtcdSnapshot is a real etcd holding a backup workload, and a snapshot
// of it.
type EtcdSnapshot struct {
	Client *clientv3.Client // closed when the test ends
	URL    string
	Backup Backup
	Path   string // the file `etcdctl snapshot save` wrote
}

// SnapshotEtcd starts a real etcd 3.4, writes WriteBackupWorkload under
// prefix into it, and saves a snapshot of it with etcdctl.
func SnapshotEtcd(t testing.TB, prefix string) EtcdSnapshot {
	t.Helper()
	s := EtcdSnapshot{URL: StartEtcd(t), Path: filepath.Join(t.TempDir(), "etcd.db")}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.URL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s.Client = c
	s.Backup = WriteBackupWorkload(t, c, prefix)
	SaveSnapshot(t, s.URL, s.Path)
	return s
}
