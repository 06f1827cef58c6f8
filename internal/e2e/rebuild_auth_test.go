package e2e

import (
	"context"
	"database/sql"
	"os"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// TestRebuildKeepsUsersAndRoles: a member rebuilt from MariaDB alone (its
// data dir lost) has the users, their roles, the roles and their
// permissions that the old member had, and goes on managing them.
func TestRebuildKeepsUsersAndRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := mysqltest.NewDatabase(t)
	a := testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(t.TempDir()))
	ca := testserver.NewClient(t, a.URL)
	steps := []func() error{
		func() error { _, err := ca.UserAdd(ctx, "alice", "secret"); return err },
		func() error {
			_, err := ca.UserAddWithOptions(ctx, "bob", "", &clientv3.UserAddOptions{NoPassword: true})
			return err
		},
		func() error { _, err := ca.RoleAdd(ctx, "apisix"); return err },
		func() error { _, err := ca.RoleAdd(ctx, "reader"); return err },
		func() error {
			_, err := ca.RoleGrantPermission(ctx, "apisix", "/apisix/", "/apisix0", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error {
			_, err := ca.RoleGrantPermission(ctx, "reader", "a", "\x00", clientv3.PermissionType(clientv3.PermRead))
			return err
		},
		func() error { _, err := ca.UserGrantRole(ctx, "alice", "apisix"); return err },
		func() error { _, err := ca.UserGrantRole(ctx, "alice", "reader"); return err },
		func() error { _, err := ca.UserGrantRole(ctx, "bob", "root"); return err },
		func() error { _, err := ca.Put(ctx, "/apisix/routes/1", "r"); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	ca.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(a.DataDir); err != nil {
		t.Fatal(err)
	}
	wantStoredHash(t, dsn, "alice", "secret")

	b := testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(t.TempDir()))
	cb := testserver.NewClient(t, b.URL)
	users, err := cb.UserList(ctx)
	if err != nil || !slices.Equal(users.Users, []string{"alice", "bob"}) {
		t.Fatalf("users after the rebuild: %v, %v", users, err)
	}
	for user, want := range map[string][]string{"alice": {"apisix", "reader"}, "bob": {"root"}} {
		u, err := cb.UserGet(ctx, user)
		if err != nil || !slices.Equal(u.Roles, want) {
			t.Errorf("%s after the rebuild: %v, %v; want roles %v", user, u, err, want)
		}
	}
	r, err := cb.RoleGet(ctx, "apisix")
	if err != nil || len(r.Perm) != 1 || string(r.Perm[0].Key) != "/apisix/" || string(r.Perm[0].RangeEnd) != "/apisix0" ||
		r.Perm[0].PermType != clientv3.PermReadWrite {
		t.Errorf("role apisix after the rebuild: %v, %v", r, err)
	}
	r, err = cb.RoleGet(ctx, "reader")
	if err != nil || len(r.Perm) != 1 || string(r.Perm[0].RangeEnd) != "\x00" || r.Perm[0].PermType != clientv3.PermRead {
		t.Errorf("role reader after the rebuild: %v, %v", r, err)
	}
	if _, err := cb.RoleDelete(ctx, "reader"); err != nil {
		t.Fatal(err)
	}
	if u, err := cb.UserGet(ctx, "alice"); err != nil || !slices.Equal(u.Roles, []string{"apisix"}) {
		t.Errorf("alice after deleting reader on the rebuilt member: %v, %v", u, err)
	}
}

// wantStoredHash checks that the database holds the user's password as a
// bcrypt hash of password, and nowhere in plain text.
func wantStoredHash(t *testing.T, dsn, user, password string) {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var hash []byte
	if err := db.QueryRow("SELECT password FROM auth_users WHERE name = ?", user).Scan(&hash); err != nil {
		t.Fatalf("%s's stored password: %v", user, err)
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil {
		t.Errorf("%s's stored hash does not match the password: %v", user, err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM auth_users WHERE password = ?", password).Scan(&n); err != nil || n != 0 {
		t.Errorf("plain password stored: %d rows, %v", n, err)
	}
}
