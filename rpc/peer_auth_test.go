package rpc

import (
	"context"
	"net"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/fsm"
)

// recordingPeer answers auth writes and counts them.
type recordingPeer struct {
	PeerBackend
	got chan *pb.InternalRaftRequest
}

func (p recordingPeer) AuthWrite(_ context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error) {
	p.got <- r
	return &pb.ResponseHeader{Revision: 1}, nil
}

// The peer service validates a forwarded auth write as proposed: hashed,
// one auth write and nothing else; what it refuses never reaches the
// backend.
func TestPeerAuthWriteValidated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := recordingPeer{got: make(chan *pb.InternalRaftRequest, 10)}
	srv := NewPeerServer(b)
	go srv.Serve(l)
	defer srv.Stop()
	c := peerClientOf(t, l.Addr().String())

	plain := &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "a", Password: "pw"}}
	for _, tc := range []struct {
		what string
		r    *pb.InternalRaftRequest
		want error
	}{
		{"plain password", plain, errGRPCBadAuthEntry},
		{"not auth", &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}}, errGRPCBadAuthEntry},
		{"auth and a put", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}, Put: &pb.PutRequest{Key: []byte("k")}}, errGRPCBadAuthEntry},
		{"empty role", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{}}, rpctypes.ErrGRPCRoleEmpty},
		{"no permission", &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "r"}}, rpctypes.ErrGRPCPermissionNotGiven},
	} {
		_, err := c.AuthWrite(ctx, tc.r)
		if status.Convert(togRPCError(err)).Message() != status.Convert(tc.want).Message() {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
	}
	hashed, err := fsm.HashPassword(plain, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthWrite(ctx, hashed); err != nil {
		t.Fatalf("hashed user add: %v", err)
	}
	if got := <-b.got; got.AuthUserAdd.Password != "" || got.AuthUserAdd.HashedPassword == "" {
		t.Errorf("backend got %v", got)
	}
	if len(b.got) != 0 {
		t.Errorf("refused requests reached the backend")
	}
}
