package fsm

import (
	"bytes"
	"os"
	"reflect"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestSnapshotV010Fixture: a snapshot written by release v0.1.0
// (testdata/snapshot-v0.1.0.bin) restores, and a store without users or
// roles writes it back byte for byte, so v0.1.0 members restore ours.
func TestSnapshotV010Fixture(t *testing.T) {
	fixture, err := os.ReadFile("testdata/snapshot-v0.1.0.bin")
	if err != nil {
		t.Fatal(err)
	}
	s := newHarness(t).s
	if err := s.Restore(bytes.NewReader(fixture)); err != nil {
		t.Fatalf("Restore(v0.1.0 fixture): %v", err)
	}
	if rev, compact := s.Revs(); rev != 6 || compact != 3 {
		t.Errorf("revisions %d, %d; want 6, 3", rev, compact)
	}
	if s.AppliedIndex() != 7 || s.KeyCount() != 2 {
		t.Errorf("applied %d, %d keys; want 7, 2", s.AppliedIndex(), s.KeyCount())
	}
	if _, ok := s.Lease(7, false); !ok {
		t.Error("lease 7 lost")
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), fixture) {
		t.Errorf("re-written snapshot differs from v0.1.0's (%d bytes, want %d)", buf.Len(), len(fixture))
	}
}

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
