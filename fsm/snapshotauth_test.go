package fsm

import (
	"bytes"
	"reflect"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/release"
)

func authHarness(t *testing.T) *harness {
	h := newHarness(t)
	h.put("k", "v")
	for _, r := range []*pb.InternalRaftRequest{userAdd("alice", "pw"), userAdd("bob", "pw"), roleAdd("r"),
		grantRole("alice", "r"), grantRole("bob", "root"), grantPerm("r", authpb.READWRITE, "/apisix/", "/apisix0")} {
		if res := h.authApply(r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	return h
}

// TestSnapshotAuthRoundTrip: a store with users and roles writes the
// versioned format, which restores to the same state.
func TestSnapshotAuthRoundTrip(t *testing.T) {
	h := authHarness(t)
	var buf bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), snapshotMagicAuth) {
		t.Fatalf("snapshot with auth state starts %q, want %q", buf.Bytes()[:8], snapshotMagicAuth)
	}
	s2 := newHarness(t).s
	if err := s2.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if s2.Digest() != h.s.Digest() {
		t.Error("restored store's digest differs")
	}
	if !reflect.DeepEqual(s2.Auth(), h.s.Auth()) {
		t.Errorf("auth after restore = %v, want %v", s2.Auth(), h.s.Auth())
	}
	wantUser(t, s2, "bob", []string{"root"})
	wantRole(t, s2, "r", "READWRITE /apisix/-/apisix0;")
	// A truncated auth section is refused, and the store keeps its state.
	if err := s2.Restore(bytes.NewReader(buf.Bytes()[:buf.Len()-3])); err == nil {
		t.Error("truncated snapshot restored")
	}
	wantUser(t, s2, "alice", []string{"r"})
}

// TestSnapshotAuthEmptiedIsV010: once the last user and role are gone the
// store writes v0.1.0's format again.
func TestSnapshotAuthEmptiedIsV010(t *testing.T) {
	h := authHarness(t)
	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "alice"}},
		{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "bob"}},
		{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "r"}},
	} {
		if res := h.apply(r); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	var buf bytes.Buffer
	if _, err := h.s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), snapshotMagic) {
		t.Errorf("snapshot of a store without auth state starts %q", buf.Bytes()[:8])
	}
}

// TestChangesSinceAuth: the auth store comes with a read only when it
// changed since the version the caller passed.
func TestChangesSinceAuth(t *testing.T) {
	h := authHarness(t)
	ch, err := h.s.ChangesSince(0, 10, 1<<20, 0, 0)
	if err != nil || ch.Auth == nil || len(ch.Auth.Users) != 2 || len(ch.Auth.Roles) != 1 {
		t.Fatalf("first read: auth %v, err %v", ch.Auth, err)
	}
	again, _ := h.s.ChangesSince(0, 10, 1<<20, 0, ch.AuthVersion)
	if again.Auth != nil {
		t.Errorf("auth read again without a change: %v", again.Auth)
	}
	h.authApply(roleAdd("s"))
	after, _ := h.s.ChangesSince(0, 10, 1<<20, 0, ch.AuthVersion)
	if after.Auth == nil || len(after.Auth.Roles) != 2 {
		t.Errorf("auth after a change: %v", after.Auth)
	}
}

func TestLoadAuth(t *testing.T) {
	src := authHarness(t).s
	s := newHarness(t).s
	if err := s.Load(2, -1, nil, nil, src.Auth()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.Auth(), src.Auth()) {
		t.Errorf("loaded auth %v, want %v", s.Auth(), src.Auth())
	}
}

// The auth store's entries are v0.2.0's, and so is a store that holds a
// user or a role (v0.1.0 cannot restore its snapshot); without one, the
// store is v0.1.0's again.
func TestAuthReleases(t *testing.T) {
	for _, r := range []*pb.InternalRaftRequest{userAdd("a", "x"), roleAdd("r"), grantRole("a", "r"),
		grantPerm("r", authpb.READ, "k", ""), revokePerm("r", "k", ""),
		{AuthUserDelete: &pb.AuthUserDeleteRequest{}}, {AuthRoleDelete: &pb.AuthRoleDeleteRequest{}},
		{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{}}, {AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{}},
	} {
		if got := EntryRelease(r); got != "v0.2.0" {
			t.Errorf("EntryRelease(%v) = %q, want v0.2.0", r, got)
		}
	}
	h := newHarness(t)
	if got := h.s.DataRelease(); got != release.First {
		t.Errorf("empty store's data release %q", got)
	}
	h.authApply(roleAdd("r"))
	if got := h.s.DataRelease(); got != "v0.2.0" {
		t.Errorf("data release with a role %q, want v0.2.0", got)
	}
	h.apply(&pb.InternalRaftRequest{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "r"}})
	if got := h.s.DataRelease(); got != release.First {
		t.Errorf("data release once the role is gone %q", got)
	}
}
