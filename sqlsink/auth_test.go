package sqlsink

import (
	"context"
	"reflect"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"

	"github.com/etcdsql/etcdsql/fsm"
)

// applyAuth hashes an auth write's password, as the member taking it
// does, and applies it.
func (r *testStore) applyAuth(req *pb.InternalRaftRequest) {
	r.t.Helper()
	hashed, err := fsm.HashPassword(req, bcrypt.MinCost)
	if err != nil {
		r.t.Fatal(err)
	}
	r.apply(hashed)
}

// TestAuthTables: a store that never had a user or role leaves the schema
// as release v0.1.0's; the first one creates the auth tables (and the
// auth_schema meta row), and a rebuild from the database brings back
// users, roles, permissions and password hashes. Emptying the auth store
// empties the tables.
func TestAuthTables(t *testing.T) {
	forEachDatabase(t, testAuthTables)
}

func testAuthTables(t *testing.T, sk *Sink) {
	ctx := context.Background()
	rs := newTestStore(t)
	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}})
	runUntil(t, sk, rs.s, func() bool { return sk.sunkIndex.Load() >= rs.idx })
	if v, err := sk.authSchema(ctx); v != 0 || err != nil {
		t.Fatalf("auth tables before any user or role: %v, %v", v, err)
	}
	if _, err := sk.db.ExecContext(ctx, "SELECT 1 FROM auth_users"); err == nil {
		t.Fatal("auth_users exists before any user or role")
	}
	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "alice", Password: "secret"}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "b'\\\"ob\x00", Options: &authpb.UserAddOptions{NoPassword: true}}},
		{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "apisix"}},
		{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "empty"}},
		{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "apisix",
			Perm: &authpb.Permission{PermType: authpb.READWRITE, Key: []byte("/apisix/"), RangeEnd: []byte("/apisix0")}}},
		{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "apisix",
			Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("/a")}}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "alice", Role: "apisix"}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "alice", Role: "root"}},
	} {
		rs.applyAuth(r)
	}
	runUntil(t, sk, rs.s, func() bool { return sk.sunkIndex.Load() >= rs.idx })
	var v int64
	if err := sk.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaAuthSchema).Scan(&v); err != nil || v != authSchemaVersion {
		t.Fatalf("meta auth_schema = %d, %v; want %d", v, err, authSchemaVersion)
	}
	// The schema version the first release refuses to open.
	if err := sk.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaSchema).Scan(&v); err != nil || v != schemaWithAuth {
		t.Fatalf("meta schema_version = %d, %v; want %d", v, err, schemaWithAuth)
	}
	rebuilt := rebuild(t, sk)
	if !reflect.DeepEqual(rebuilt.Auth(), rs.s.Auth()) {
		t.Fatalf("auth after rebuild:\n%v\nwant\n%v", rebuilt.Auth(), rs.s.Auth())
	}
	if rebuilt.Digest() != rs.s.Digest() {
		t.Error("rebuilt store differs from the original")
	}
	if err := bcrypt.CompareHashAndPassword(rebuilt.Auth().Users[0].Password, []byte("secret")); err != nil {
		t.Errorf("alice's password after rebuild: %v", err)
	}

	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "alice"}},
		{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "b'\\\"ob\x00"}},
		{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "apisix"}},
		{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "empty"}},
	} {
		rs.applyAuth(r)
	}
	runUntil(t, sk, rs.s, func() bool { return sk.sunkIndex.Load() >= rs.idx })
	for _, table := range []string{"auth_users", "auth_user_roles", "auth_roles", "auth_permissions"} {
		var n int
		if err := sk.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s after deleting everything: %d rows, %v", table, n, err)
		}
	}
	if a := rebuild(t, sk).Auth(); !a.Empty() {
		t.Errorf("auth after emptying and rebuilding: %v", a)
	}
}

func rebuild(t *testing.T, sk *Sink) *fsm.Store {
	t.Helper()
	fresh, _ := fsm.New(fsm.DefaultConfig())
	if _, err := sk.LoadInto(context.Background(), fresh); err != nil {
		t.Fatal(err)
	}
	return fresh
}
