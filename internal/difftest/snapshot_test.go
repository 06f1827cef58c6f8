package difftest

import (
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

func newClient(t *testing.T, url string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestSnapshotToEtcd (issue 12, acceptance 3): a snapshot etcdctl 3.4
// saves from an etcdsql process restores with etcdctl 3.4 into a real
// etcd 3.4 that then answers as etcdsql does: the key space at the
// current revision and at every revision since the compaction, watches
// from old revisions, the leases.
func TestSnapshotToEtcd(t *testing.T) {
	p := testserver.StartProcess(t, filepath.Join(t.TempDir(), "etcdsql"))
	src := newClient(t, p.URL)
	b := WriteBackupWorkload(t, src, "/backup/")

	path := filepath.Join(t.TempDir(), "etcdsql.db")
	SaveSnapshot(t, p.URL, path)
	status := ReadSnapshotStatus(t, path)
	if status.Revision != b.Rev || status.TotalKey == 0 || status.TotalSize == 0 {
		t.Errorf("etcdctl snapshot status: %+v, want revision %d and keys", status, b.Rev)
	}

	t.Logf("backup %+v, snapshot status %+v", b, status)
	dir := RestoreSnapshot(t, path)
	url := StartEtcdWith(t, EtcdOptions{DataDir: dir})
	CompareBackup(t, src, newClient(t, url), b)
}
