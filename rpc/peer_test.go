package rpc

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func peerClientOf(t *testing.T, addr string) *PeerClient {
	t.Helper()
	opts := append(PeerDialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return NewPeerClient(cc)
}

// blockingPeer holds every put until its context ends.
type blockingPeer struct {
	PeerBackend
	got chan struct{}
}

func (b blockingPeer) Put(ctx context.Context, _ *pb.PutRequest) (*pb.PutResponse, error) {
	close(b.got)
	<-ctx.Done()
	return nil, ctx.Err()
}

// A forwarded call is retried with the next leader only when it provably
// did nothing there: the member's port, stopping, accepted the connection
// and closed it before the handshake ended (no stream, nothing sent), or
// refused it. A call the member received, whose connection then failed,
// has an unknown outcome.
func TestPeerCallUnreachableOnlyWhenNothingWasSent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	put := &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}

	// A port that accepts and closes at once, as one does while its
	// member stops.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := peerClientOf(t, l.Addr().String()).Put(ctx, put); !errors.Is(err, ErrPeerUnreachable) {
		t.Errorf("connection closed before its handshake: %v, want %v", err, ErrPeerUnreachable)
	}

	// A port nobody listens on.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l2.Addr().String()
	l2.Close()
	if _, err := peerClientOf(t, addr).Put(ctx, put); !errors.Is(err, ErrPeerUnreachable) {
		t.Errorf("connection refused: %v, want %v", err, ErrPeerUnreachable)
	}

	// A member that received the call and stopped before answering.
	l3, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := blockingPeer{got: make(chan struct{})}
	srv := NewPeerServer(b)
	go srv.Serve(l3)
	errc := make(chan error, 1)
	go func() {
		_, err := peerClientOf(t, l3.Addr().String()).Put(ctx, put)
		errc <- err
	}()
	select {
	case <-b.got:
	case <-ctx.Done():
		t.Fatal("the put never reached the member")
	}
	srv.Stop()
	if err := <-errc; !errors.Is(err, ErrLeaderChanged) {
		t.Errorf("connection lost after the call was received: %v, want %v", err, ErrLeaderChanged)
	}
}
