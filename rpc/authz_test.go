package rpc

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"

	"github.com/etcdsql/etcdsql/fsm"
)

func putOp(r *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
}

func txnOp(r *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
}

// TestCheckTxnOps: every operation of a transaction is checked as the
// same request alone would be, nested ones and both branches included:
// prev_kv needs READ, a lease holding a key outside needs WRITE on it
// (where etcd 3.4.23 let these pass: GHSA-rfx7-8w68-q57q,
// GHSA-x35m-3gp4-4fh5).
func TestCheckTxnOps(t *testing.T) {
	s := enabledStore(t)
	idx := uint64(10)
	for _, r := range []*pb.InternalRaftRequest{
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "w", Password: "pw"}},
		{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "rw"}},
		{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "rw", Perm: &authpb.Permission{PermType: authpb.WRITE, Key: []byte("/a/"), RangeEnd: []byte("/a0")}}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "w", Role: "rw"}},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 600}},
		{Put: &pb.PutRequest{Key: []byte("/b/k"), Lease: 7}},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 8, TTL: 600}},
	} {
		h, _ := fsm.HashPassword(r, bcrypt.MinCost)
		data, _ := fsm.Encode(h)
		idx++
		if res := s.Apply(idx, data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	_, rev := s.AuthStatus()
	id := identity{user: "w", rev: rev}
	put := &pb.PutRequest{Key: []byte("/a/x")}
	cases := []struct {
		name string
		req  any
		want error
	}{
		{"put inside", put, nil},
		{"put with prev_kv, no READ", &pb.PutRequest{Key: []byte("/a/x"), PrevKv: true}, fsm.ErrPermissionDenied},
		{"put attaching an empty lease", &pb.PutRequest{Key: []byte("/a/x"), Lease: 8}, nil},
		{"put attaching a lease holding /b/k", &pb.PutRequest{Key: []byte("/a/x"), Lease: 7}, fsm.ErrPermissionDenied},
		{"txn put inside", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(put)}}, nil},
		{"txn put with prev_kv", &pb.TxnRequest{Failure: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("/a/x"), PrevKv: true})}}, fsm.ErrPermissionDenied},
		{"txn put with the lease", &pb.TxnRequest{Success: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("/a/x"), Lease: 7})}}, fsm.ErrPermissionDenied},
		{"nested txn outside", &pb.TxnRequest{Success: []*pb.RequestOp{txnOp(&pb.TxnRequest{Failure: []*pb.RequestOp{putOp(&pb.PutRequest{Key: []byte("/b/k")})}})}}, fsm.ErrPermissionDenied},
		{"compare inside without READ", &pb.TxnRequest{Compare: []*pb.Compare{{Key: []byte("/a/x")}}}, fsm.ErrPermissionDenied},
		{"revoke the lease holding /b/k", &pb.LeaseRevokeRequest{ID: 7}, fsm.ErrPermissionDenied},
		{"revoke an empty lease", &pb.LeaseRevokeRequest{ID: 8}, nil},
		{"forwarded auth write", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "x"}}, fsm.ErrPermissionDenied},
		{"user get self", &pb.AuthUserGetRequest{Name: "w"}, nil},
		{"user get other", &pb.AuthUserGetRequest{Name: "root"}, fsm.ErrPermissionDenied},
		{"time to live of the lease holding /b/k", &pb.LeaseTimeToLiveRequest{ID: 7, Keys: true}, fsm.ErrPermissionDenied},
		{"time to live of an empty lease", &pb.LeaseTimeToLiveRequest{ID: 8}, nil},
		{"compaction", &pb.CompactionRequest{Revision: 1}, fsm.ErrPermissionDenied},
		{"member remove", &pb.MemberRemoveRequest{ID: 1}, fsm.ErrPermissionDenied},
	}
	for _, c := range cases {
		if err := checkFor(c.req)(s, id); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if checkFor(&pb.LeaseGrantRequest{}) != nil {
		t.Error("lease grant is checked; etcd checks it only when a put attaches the lease")
	}
}
