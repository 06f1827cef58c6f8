package fsm

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func enableReq(t testing.TB) *pb.InternalRaftRequest {
	k, err := NewSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}, Authenticate: &pb.InternalAuthenticateRequest{SimpleToken: k}}
}

func mustAuth(t testing.TB, h *harness, r *pb.InternalRaftRequest, want error) {
	t.Helper()
	if err := h.authApply(r).Err; !errors.Is(err, want) {
		t.Fatalf("apply %v: %v, want %v", r, err, want)
	}
}

// TestAuthEnableRules: etcd 3.4's rules for enabling, and for root while
// enabled; the auth revision grows on each change, not on a refusal.
func TestAuthEnableRules(t *testing.T) {
	h := newHarness(t)
	if err := ValidateAuth(enableReq(t), Limits{}); err != nil {
		t.Fatalf("ValidateAuth(enable) = %v", err)
	}
	if err := ValidateAuth(&pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, Limits{}); err == nil {
		t.Fatal("enable without a signing key validated")
	}
	mustAuth(t, h, enableReq(t), ErrRootUserNotExist)
	mustAuth(t, h, userAdd("root", "pw"), nil)
	mustAuth(t, h, enableReq(t), ErrRootRoleNotExist)
	mustAuth(t, h, grantRole("root", "root"), nil)
	if on, rev := h.s.AuthStatus(); on || rev != 3 {
		t.Fatalf("AuthStatus = %v, %d; want false, 3", on, rev)
	}
	mustAuth(t, h, enableReq(t), nil)
	if on, rev := h.s.AuthStatus(); !on || rev != 4 {
		t.Fatalf("AuthStatus = %v, %d; want true, 4", on, rev)
	}
	mustAuth(t, h, enableReq(t), nil) // enabled already: no change
	mustAuth(t, h, &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "root"}}, ErrInvalidAuthMgmt)
	mustAuth(t, h, &pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"}}, ErrInvalidAuthMgmt)
	if _, rev := h.s.AuthStatus(); rev != 4 {
		t.Fatalf("auth revision %d after refusals, want 4", rev)
	}
	mustAuth(t, h, &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}}, nil)
	mustAuth(t, h, &pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "root", Role: "root"}}, nil)
	if on, rev := h.s.AuthStatus(); on || rev != 6 {
		t.Fatalf("AuthStatus = %v, %d; want false, 6", on, rev)
	}
}

// enabledHarness has root, and alice with READ on /apisix/ and WRITE on
// key "w", auth enabled.
func enabledHarness(t testing.TB) *harness {
	h := newHarness(t)
	for _, r := range []*pb.InternalRaftRequest{userAdd("root", "rootpw"), grantRole("root", "root"),
		userAdd("alice", "pw"), roleAdd("r"), grantRole("alice", "r"),
		grantPerm("r", authpb.READ, "/apisix/", "/apisix0"), grantPerm("r", authpb.WRITE, "w", ""), enableReq(t)} {
		mustAuth(t, h, r, nil)
	}
	return h
}

// TestTokens: a password gives a token every store with the same state
// verifies; a wrong one, an expired, forged or stale token is refused.
func TestTokens(t *testing.T) {
	h := enabledHarness(t)
	if _, err := h.s.CheckPassword("alice", "nope"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := h.s.CheckPassword("carol", "pw"); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("unknown user: %v", err)
	}
	hash, err := h.s.CheckPassword("alice", "pw")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := h.s.IssueToken("alice", hash, now.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// A replica restored from a snapshot verifies it.
	var buf bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	s2, _ := New(DefaultConfig())
	if err := s2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s2.Auth(), h.s.Auth()) || !s2.AuthEnabled() {
		t.Fatal("auth state differs after restore")
	}
	for _, s := range []*Store{h.s, s2} {
		if u, rev, err := s.CheckToken(tok, now); u != "alice" || rev != 9 || err != nil {
			t.Fatalf("CheckToken = %q, %d, %v", u, rev, err)
		}
	}
	// One signature character changed: not the last, whose low bits
	// are padding that decoding ignores.
	i := len(tok) - 5
	swap := byte('A')
	if tok[i] == 'A' {
		swap = 'B'
	}
	forged := tok[:i] + string(swap) + tok[i+1:]
	for _, bad := range []string{"", "x.y", forged} {
		if _, _, err := h.s.CheckToken(bad, now); !errors.Is(err, ErrInvalidAuthToken) {
			t.Errorf("CheckToken(%q) = %v", bad, err)
		}
	}
	if _, _, err := h.s.CheckToken(tok, now.Add(5*time.Minute)); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("expired token: %v", err)
	}
	// A role change keeps it; a password change invalidates it.
	mustAuth(t, h, roleAdd("r2"), nil)
	if _, _, err := h.s.CheckToken(tok, now); err != nil {
		t.Errorf("token after a role add: %v", err)
	}
	mustAuth(t, h, &pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "alice", Password: "pw"}}, nil)
	if _, _, err := h.s.CheckToken(tok, now); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token after a password change: %v", err)
	}
	// Deleting the user, or disabling and enabling again, invalidates.
	rootHash, _ := h.s.CheckPassword("root", "rootpw")
	rootTok, _ := h.s.IssueToken("root", rootHash, now.Add(time.Minute))
	hash, _ = h.s.CheckPassword("alice", "pw")
	tok, _ = h.s.IssueToken("alice", hash, now.Add(time.Minute))
	mustAuth(t, h, &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "alice"}}, nil)
	if _, _, err := h.s.CheckToken(tok, now); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token after the user's deletion: %v", err)
	}
	if _, _, err := h.s.CheckToken(rootTok, now); err != nil {
		t.Errorf("root's token after another user's deletion: %v", err)
	}
	mustAuth(t, h, &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}}, nil)
	mustAuth(t, h, enableReq(t), nil)
	if _, _, err := h.s.CheckToken(rootTok, now); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token after disable and enable: %v", err)
	}
}

// TestPerms: READ on a prefix covers reads inside it only; root may do
// anything; no user and an old revision are refused as etcd refuses them.
func TestPerms(t *testing.T) {
	h := enabledHarness(t)
	_, rev := h.s.AuthStatus()
	cases := []struct {
		user     string
		rev      uint64
		key, end string
		write    bool
		want     error
	}{
		{"alice", rev, "/apisix/routes/1", "", false, nil},
		{"alice", rev, "/apisix/", "/apisix0", false, nil},
		{"alice", rev, "/apisix/a", "/apisix/b", false, nil},
		{"alice", rev, "/apisix/", "\x00", false, ErrPermissionDenied},
		{"alice", rev, "/apisix", "", false, ErrPermissionDenied},
		{"alice", rev, "/apisix/routes/1", "", true, ErrPermissionDenied},
		{"alice", rev, "w", "", true, nil},
		{"alice", rev, "w", "", false, ErrPermissionDenied},
		{"alice", rev, "w", "x", true, ErrPermissionDenied},
		{"root", rev, "", "\x00", true, nil},
		{"", 0, "w", "", true, ErrUserEmpty},
		{"alice", rev - 1, "w", "", true, ErrAuthOldRevision},
		{"carol", rev, "w", "", true, ErrPermissionDenied},
	}
	for _, c := range cases {
		var end []byte
		if c.end != "" {
			end = []byte(c.end)
		}
		if err := h.s.CheckPerm(c.user, c.rev, []byte(c.key), end, c.write); !errors.Is(err, c.want) {
			t.Errorf("CheckPerm(%q, %d, %q, %q, write %v) = %v, want %v", c.user, c.rev, c.key, c.end, c.write, err, c.want)
		}
	}
	if err := h.s.CheckAdmin("alice", rev); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("CheckAdmin(alice) = %v", err)
	}
	if err := h.s.CheckAdmin("root", rev); err != nil {
		t.Errorf("CheckAdmin(root) = %v", err)
	}
}

// BenchmarkTokenAndPerm is the work a checked call adds: verifying the
// token and checking a key against the user's permissions.
func BenchmarkTokenAndPerm(b *testing.B) {
	h := enabledHarness(b)
	hash, _ := h.s.CheckPassword("alice", "pw")
	tok, _ := h.s.IssueToken("alice", hash, time.Now().Add(time.Hour))
	key := []byte("/apisix/routes/1")
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u, rev, err := h.s.CheckToken(tok, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		if err := h.s.CheckPerm(u, rev, key, nil, false); err != nil {
			b.Fatal(err)
		}
	}
}
