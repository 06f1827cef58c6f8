package etcdimport_test

import (
	"context"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/etcdbackend"
	"github.com/etcdsql/etcdsql/internal/etcdimport"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// TestImportFromSnapshot (issue 12, acceptance 3, second half): a snapshot
// etcdctl 3.4 saves from a real etcd 3.4 (overwrites, deletes, multi-key
// transactions, leased keys, a compaction), imported into an empty
// etcdsql member, gives the same key space: every key with its value,
// create and mod revision, version and lease, at the same revision, and
// the same leases.
func TestImportFromSnapshot(t *testing.T) {
	e := difftest.SnapshotEtcd(t, "/backup/")
	src, b := e.Client, e.Backup
	st, err := etcdbackend.ReadFile(e.Path)
	if err != nil {
		t.Fatal(err)
	}

	dst := testserver.NewClient(t, testserver.Start(t).URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := etcdimport.Run(ctx, etcdimport.Config{Source: &etcdimport.SnapshotSource{State: st}, Target: dst.ActiveConnection(),
		Finish: true, PageKeys: 7})
	if err != nil {
		t.Fatalf("import: %v (%v)", err, sum)
	}
	t.Log(sum)
	sameKeys(t, "imported from the snapshot", rangeAll(t, src), rangeAll(t, dst))
	sameLeases(t, src, dst, 5)
	if _, err := dst.Put(ctx, "/backup/after", "1"); err != nil {
		t.Fatalf("write after the import finished: %v", err)
	}
	if r, _ := difftest.RangeAt(t, dst, b.Prefix+"after", 0); r[0].ModRevision != b.Rev+1 {
		t.Fatalf("first write after the import at revision %d, want %d", r[0].ModRevision, b.Rev+1)
	}
}
