package fsm

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
)

// authApply hashes a request's password (as the member taking it does) and
// applies it.
func (h *harness) authApply(r *pb.InternalRaftRequest) *Result {
	h.tb.Helper()
	hashed, err := HashPassword(r, bcrypt.MinCost)
	if err != nil {
		h.tb.Fatalf("HashPassword: %v", err)
	}
	return h.apply(hashed)
}

func userAdd(name, pw string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: name, Password: pw}}
}

func roleAdd(name string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: name}}
}

func grantRole(user, role string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: user, Role: role}}
}

func grantPerm(role string, t authpb.Permission_Type, key, end string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{
		Name: role, Perm: &authpb.Permission{PermType: t, Key: []byte(key), RangeEnd: bytesOrNil(end)}}}
}

func revokePerm(role, key, end string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{
		Role: role, Key: []byte(key), RangeEnd: bytesOrNil(end)}}
}

// TestAuthCalls runs etcd's user and role calls in order, each with the
// answer etcd 3.4 gives, and checks that failures change nothing.
func TestAuthCalls(t *testing.T) {
	h := newHarness(t)
	steps := []struct {
		req  *pb.InternalRaftRequest
		want error
	}{
		{userAdd("", "x"), ErrUserEmpty},
		{userAdd("alice", "pw"), nil},
		{userAdd("alice", "pw2"), ErrUserAlreadyExist},
		{&pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "bob", Options: &authpb.UserAddOptions{NoPassword: true}}}, nil},
		{roleAdd(""), ErrRoleEmpty},
		{roleAdd("r1"), nil},
		{roleAdd("r1"), ErrRoleAlreadyExist},
		{roleAdd("r2"), nil},
		{grantRole("carol", "r1"), ErrUserNotFound},
		{grantRole("alice", "nope"), ErrRoleNotFound},
		{grantRole("alice", "r2"), nil},
		{grantRole("alice", "r1"), nil},
		{grantRole("alice", "r1"), nil}, // again: nothing changes
		{grantRole("bob", "root"), nil}, // root need not exist
		{grantRole("bob", "r1"), nil},
		{&pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "nope"}}, ErrRoleNotGranted},
		{&pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "zed", Role: "r1"}}, ErrUserNotFound},
		{&pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "r2"}}, nil},
		{grantPerm("nope", authpb.READ, "a", ""), ErrRoleNotFound},
		{grantPerm("r1", authpb.READ, "b", "c"), nil},
		{grantPerm("r1", authpb.WRITE, "a", ""), nil},
		{grantPerm("r1", authpb.READWRITE, "b", "c"), nil}, // updates the type
		{revokePerm("r1", "b", ""), ErrPermissionNotGranted},
		{revokePerm("nope", "b", "c"), ErrRoleNotFound},
		{grantPerm("r2", authpb.READ, "x", "\x00"), nil},
		{revokePerm("r2", "x", "\x00"), nil},
		{&pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "zed", Password: "p"}}, ErrUserNotFound},
		{&pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "alice", Password: "new"}}, nil},
		{&pb.InternalRaftRequest{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "nope"}}, ErrRoleNotFound},
		{&pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "nope"}}, ErrUserNotFound},
	}
	for i, st := range steps {
		before, ver := h.s.Digest(), h.s.authVersion
		res := h.authApply(st.req)
		wantErr(t, fmt.Sprintf("step %d %v", i, st.req), res.Err, st.want)
		if st.want != nil && (h.s.Digest() != before || h.s.authVersion != ver) {
			t.Errorf("step %d: a refused request changed the store", i)
		}
		if st.want == nil && res.Auth == nil {
			t.Errorf("step %d: no response", i)
		}
	}
	wantUser(t, h.s, "alice", []string{"r1"})
	wantUser(t, h.s, "bob", []string{"r1", "root"})
	wantRole(t, h.s, "r1", "WRITE a-;READWRITE b-c;")
	wantRole(t, h.s, "r2", "")
	if got := h.s.UserList().Users; !reflect.DeepEqual(got, []string{"alice", "bob"}) {
		t.Errorf("UserList = %v", got)
	}
	if got := h.s.RoleList().Roles; !reflect.DeepEqual(got, []string{"r1", "r2"}) {
		t.Errorf("RoleList = %v", got)
	}
	if rev := h.s.Rev(); rev != 1 {
		t.Errorf("auth writes moved the revision to %d", rev)
	}
}

func TestAuthPasswords(t *testing.T) {
	h := newHarness(t)
	h.authApply(userAdd("alice", "pw"))
	h.authApply(&pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "bob", Password: "ignored", Options: &authpb.UserAddOptions{NoPassword: true}}})
	a := h.s.Auth()
	if err := bcrypt.CompareHashAndPassword(a.Users[0].Password, []byte("pw")); err != nil {
		t.Errorf("alice's hash does not match her password: %v", err)
	}
	if len(a.Users[1].Password) != 0 || !a.Users[1].Options.NoPassword {
		t.Errorf("bob = %v, want no password", a.Users[1])
	}
	h.authApply(&pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "alice", Password: "new"}})
	if err := bcrypt.CompareHashAndPassword(h.s.Auth().Users[0].Password, []byte("new")); err != nil {
		t.Errorf("new password: %v", err)
	}
}

// TestAuthRefusesPlainPasswords: an entry that carries a plain password, or
// no valid hash, is refused alike on every member and changes nothing.
func TestAuthRefusesPlainPasswords(t *testing.T) {
	h := newHarness(t)
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "a", Password: "plain"}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "a", Password: "plain", HashedPassword: string(hash)}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "a", HashedPassword: "not a hash"}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "a"}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "a", HashedPassword: string(hash), Options: &authpb.UserAddOptions{NoPassword: true}}},
		{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "a", Password: "plain"}},
	} {
		res := h.apply(r)
		wantErr(t, r.String(), res.Err, ErrBadPasswordEntry)
	}
	res := h.apply(&pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "r"}})
	wantErr(t, "grant without permission", res.Err, ErrPermissionNotGiven)
	long := string(make([]byte, MaxAuthNameBytes+1))
	wantErr(t, "long user", h.authApply(userAdd(long, "x")).Err, ErrAuthNameTooLong)
	wantErr(t, "long role", h.authApply(roleAdd(long)).Err, ErrAuthNameTooLong)
	if !h.s.Auth().Empty() {
		t.Errorf("refused entries left %v", h.s.Auth())
	}
}

func TestAuthRoleDeleteRevokesFromUsers(t *testing.T) {
	h := newHarness(t)
	for _, r := range []*pb.InternalRaftRequest{userAdd("a", "x"), userAdd("b", "x"), roleAdd("r"), roleAdd("s"),
		grantRole("a", "r"), grantRole("a", "s"), grantRole("b", "r")} {
		if res := h.authApply(r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	before := h.s.Snapshot()
	if res := h.authApply(&pb.InternalRaftRequest{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "r"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	wantUser(t, h.s, "a", []string{"s"})
	wantUser(t, h.s, "b", nil)
	if _, err := h.s.RoleGet("r"); err != ErrRoleNotFound {
		t.Errorf("RoleGet(r) after delete: %v", err)
	}
	// Records are copied on change: the snapshot taken before still has r.
	if got := before.auth.Users[1].Roles; !reflect.DeepEqual(got, []string{"r"}) {
		t.Errorf("snapshot taken before the delete changed: b's roles %v", got)
	}
}

// TestAuthGrantPermissionOrder: permissions stay sorted by key; a grant of
// a key and range end that exist updates the type in place.
func TestAuthGrantPermissionOrder(t *testing.T) {
	h := newHarness(t)
	h.authApply(roleAdd("r"))
	for _, r := range []*pb.InternalRaftRequest{grantPerm("r", authpb.READ, "m", ""), grantPerm("r", authpb.READ, "a", "b"),
		grantPerm("r", authpb.WRITE, "z", "\x00"), grantPerm("r", authpb.WRITE, "m", "")} {
		if res := h.authApply(r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	wantRole(t, h.s, "r", "READ a-b;WRITE m-;WRITE z-\x00;")
}

func wantUser(tb testing.TB, s *Store, name string, roles []string) {
	tb.Helper()
	resp, err := s.UserGet(name)
	if err != nil || !reflect.DeepEqual(resp.Roles, roles) {
		tb.Errorf("UserGet(%s) = %v, %v; want roles %v", name, resp.GetRoles(), err, roles)
	}
}

func wantRole(tb testing.TB, s *Store, name, perms string) {
	tb.Helper()
	resp, err := s.RoleGet(name)
	if err != nil {
		tb.Fatalf("RoleGet(%s): %v", name, err)
	}
	got := ""
	for _, p := range resp.Perm {
		got += fmt.Sprintf("%s %s-%s;", p.PermType, p.Key, p.RangeEnd)
	}
	if got != perms {
		tb.Errorf("RoleGet(%s) = %q, want %q", name, got, perms)
	}
}

// testHash is one bcrypt hash the command generator's user adds share
// (hashing each would make the determinism tests slow).
var testHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// auth generates an auth write over a few users and roles, valid or not.
func (g *cmdGen) auth() *pb.InternalRaftRequest {
	user := fmt.Sprintf("u%d", g.r.IntN(4))
	role := fmt.Sprintf("r%d", g.r.IntN(4))
	if g.r.IntN(8) == 0 {
		role = "root"
	}
	if g.r.IntN(6) == 0 {
		user = "root"
	}
	key, end := g.keyRange()
	switch g.r.IntN(11) {
	case 9:
		sk := fmt.Sprintf("%032d", g.r.IntN(1000))
		return &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}, Authenticate: &pb.InternalAuthenticateRequest{SimpleToken: sk}}
	case 10:
		return &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}}
	case 0:
		return &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: user, HashedPassword: testHash()}}
	case 1:
		return &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: user}}
	case 2:
		return &pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: user, HashedPassword: testHash()}}
	case 3:
		return grantRole(user, role)
	case 4:
		return &pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: user, Role: role}}
	case 5:
		return roleAdd(role)
	case 6:
		return &pb.InternalRaftRequest{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: role}}
	case 7:
		return &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: role,
			Perm: &authpb.Permission{PermType: authpb.Permission_Type(g.r.IntN(3)), Key: key, RangeEnd: end}}}
	}
	return &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{Role: role, Key: key, RangeEnd: end}}
}
