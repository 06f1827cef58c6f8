package e2e

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// TestRebuildKeepsEnabledAuth: a member rebuilt from MariaDB alone keeps
// authentication enabled, the passwords, and the signing key: a token
// issued before the rebuild is still accepted, and permissions still hold.
func TestRebuildKeepsEnabledAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := mysqltest.NewDatabase(t)
	a := testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(t.TempDir()))
	ca := testserver.NewClient(t, a.URL)
	steps := []func() error{
		func() error { _, err := ca.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := ca.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := ca.UserAdd(ctx, "alice", "secret"); return err },
		func() error { _, err := ca.RoleAdd(ctx, "apisix"); return err },
		func() error {
			_, err := ca.RoleGrantPermission(ctx, "apisix", "/apisix/", "/apisix0", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := ca.UserGrantRole(ctx, "alice", "apisix"); return err },
		func() error { _, err := ca.Put(ctx, "/apisix/routes/1", "r"); return err },
		func() error { _, err := ca.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	au, err := pb.NewAuthClient(ca.ActiveConnection()).Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	ca.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(a.DataDir); err != nil {
		t.Fatal(err)
	}

	b := testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(t.TempDir()))
	cb := testserver.NewClient(t, b.URL)
	kv := pb.NewKVClient(cb.ActiveConnection())
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("/apisix/routes/1")}); !errors.Is(rpctypes.Error(err), rpctypes.ErrUserEmpty) {
		t.Errorf("a read without token after the rebuild: %v", err)
	}
	tctx := metadata.AppendToOutgoingContext(ctx, "token", au.Token)
	if r, err := kv.Range(tctx, &pb.RangeRequest{Key: []byte("/apisix/routes/1")}); err != nil || len(r.Kvs) != 1 {
		t.Errorf("the token issued before the rebuild: %v, %v", r, err)
	}
	if _, err := kv.Put(tctx, &pb.PutRequest{Key: []byte("/apisix/routes/1"), Value: []byte("x")}); !errors.Is(rpctypes.Error(err), rpctypes.ErrPermissionDenied) {
		t.Errorf("alice's put after the rebuild: %v", err)
	}
	if _, err := pb.NewAuthClient(cb.ActiveConnection()).Authenticate(ctx, &pb.AuthenticateRequest{Name: "root", Password: "rootpw"}); err != nil {
		t.Errorf("root's old password after the rebuild: %v", err)
	}
}
