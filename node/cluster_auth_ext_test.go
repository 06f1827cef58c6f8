package node_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testForwardedAuth manages users and roles through the follower fc and
// reads them on the other follower gc and the leader lc: every write is
// forwarded (its password hashed on fc: a plain password would be refused
// by every member's apply), every read is linearizable.
func testForwardedAuth(t *testing.T, ctx context.Context, fc, gc, lc *clientv3.Client) {
	steps := []struct {
		what string
		call func() error
		want error
	}{
		{"user add", func() error { _, err := fc.UserAdd(ctx, "alice", "pw"); return err }, nil},
		{"user add again", func() error { _, err := fc.UserAdd(ctx, "alice", "pw"); return err }, rpctypes.ErrUserAlreadyExist},
		{"role add", func() error { _, err := fc.RoleAdd(ctx, "apisix"); return err }, nil},
		{"grant permission", func() error {
			_, err := fc.RoleGrantPermission(ctx, "apisix", "/apisix/", "/apisix0", clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}, nil},
		{"grant role", func() error { _, err := fc.UserGrantRole(ctx, "alice", "apisix"); return err }, nil},
		{"grant missing role", func() error { _, err := fc.UserGrantRole(ctx, "alice", "nope"); return err }, rpctypes.ErrRoleNotFound},
		{"change password", func() error { _, err := fc.UserChangePassword(ctx, "alice", "pw2"); return err }, nil},
	}
	for _, st := range steps {
		if err := st.call(); !errors.Is(err, st.want) {
			t.Fatalf("%s via follower: %v, want %v", st.what, err, st.want)
		}
	}
	for name, c := range map[string]*clientv3.Client{"follower": gc, "leader": lc} {
		u, err := c.UserGet(ctx, "alice")
		if err != nil || !slices.Equal(u.Roles, []string{"apisix"}) {
			t.Errorf("user get on %s: %v, %v", name, u, err)
		}
		r, err := c.RoleGet(ctx, "apisix")
		if err != nil || len(r.Perm) != 1 || string(r.Perm[0].Key) != "/apisix/" || string(r.Perm[0].RangeEnd) != "/apisix0" {
			t.Errorf("role get on %s: %v, %v", name, r, err)
		}
		if l, err := c.UserList(ctx); err != nil || !slices.Equal(l.Users, []string{"alice"}) {
			t.Errorf("user list on %s: %v, %v", name, l, err)
		}
	}
	if _, err := fc.RoleDelete(ctx, "apisix"); err != nil {
		t.Fatal(err)
	}
	if u, err := gc.UserGet(ctx, "alice"); err != nil || len(u.Roles) != 0 {
		t.Errorf("alice after her role's deletion: %v, %v", u, err)
	}
	if _, err := fc.UserDelete(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := gc.UserGet(ctx, "alice"); !errors.Is(err, rpctypes.ErrUserNotFound) {
		t.Errorf("deleted user get: %v", err)
	}
	if _, err := fc.AuthEnable(ctx); !errors.Is(err, rpctypes.ErrRootUserNotExist) {
		t.Errorf("auth enable without root: %v", err)
	}
}
