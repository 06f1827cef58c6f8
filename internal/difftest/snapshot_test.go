package difftest

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// TestSnapshotToEtcd (issue 12, acceptance 3): a snapshot etcdctl 3.4
// saves from an etcdsql process restores with etcdctl 3.4 into a real
// etcd 3.4 that then answers as etcdsql does: the key space at the
// current revision and at every revision since the compaction, watches
// from old revisions, the leases.
func TestSnapshotToEtcd(t *testing.T) {
	p := testserver.StartProcess(t, filepath.Join(t.TempDir(), "etcdsql"))
	src := testserver.NewClient(t, p.URL)
	b := WriteBackupWorkload(t, src, "/backup/")

	path := filepath.Join(t.TempDir(), "etcdsql.db")
	SaveSnapshot(t, p.URL, path)
	status := ReadSnapshotStatus(t, path)
	if status.Revision != b.Rev || status.TotalKey == 0 || status.TotalSize == 0 {
		t.Errorf("etcdctl snapshot status: %+v, want revision %d and keys", status, b.Rev)
	}

	t.Logf("backup %+v, snapshot status %+v", b, status)
	if left, _ := filepath.Glob(filepath.Join(p.DataDir, "etcdsql-snapshot-*")); len(left) != 0 {
		t.Errorf("temporary snapshot files left in the data dir: %v", left)
	}
	dir := RestoreSnapshot(t, path)
	url := StartEtcdWith(t, EtcdOptions{DataDir: dir})
	CompareBackup(t, src, testserver.NewClient(t, url), b)
}

// TestSnapshotAuth: with authentication on, only root may take a snapshot
// (etcd's rule), and the users, roles, passwords and switch come through
// into the restored etcd.
func TestSnapshotAuth(t *testing.T) {
	srv := testserver.Start(t)
	cli := testserver.NewClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, "reader", "/apisix/", clientv3.GetPrefixRangeEnd("/apisix/"), clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "alice", "reader"); return err },
		func() error { _, err := cli.Put(ctx, "/apisix/routes/1", `{"uri":"/a"}`); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "auth.db")
	out, err := EtcdctlErr("--endpoints", srv.URL, "--user", "alice:alicepw", "snapshot", "save", path)
	if err == nil || !strings.Contains(string(out), "etcdserver: permission denied") {
		t.Fatalf("snapshot by a user without the root role: %v\n%s", err, out)
	}
	Etcdctl(t, "--endpoints", srv.URL, "--user", "root:rootpw", "snapshot", "save", path)

	url := StartEtcdWith(t, EtcdOptions{DataDir: RestoreSnapshot(t, path)})
	anon := testserver.NewClient(t, url)
	if _, err := anon.Get(ctx, "/apisix/routes/1"); err == nil {
		t.Fatal("restored etcd answered a range without credentials: authentication is off")
	}
	alice := userClient(t, url, "alice", "alicepw")
	r, err := alice.Get(ctx, "/apisix/routes/1")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != `{"uri":"/a"}` {
		t.Fatalf("alice reads her prefix: %v %v", r, err)
	}
	if _, err := alice.Put(ctx, "/apisix/routes/2", "x"); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("alice writes with a read-only role: %v", err)
	}
	root := userClient(t, url, "root", "rootpw")
	users, err := root.UserList(ctx)
	if err != nil || !reflect.DeepEqual(users.Users, []string{"alice", "root"}) {
		t.Fatalf("users of the restored etcd: %v %v", users, err)
	}
	role, err := root.RoleGet(ctx, "reader")
	if err != nil || len(role.Perm) != 1 || string(role.Perm[0].Key) != "/apisix/" {
		t.Fatalf("role reader of the restored etcd: %v %v", role, err)
	}
}

// userClient logs in to url as user, and fails the test if it cannot.
func userClient(t *testing.T, url, user, password string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		Username: user, Password: password})
	if err != nil {
		t.Fatalf("%s logs in to %s: %v", user, url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
