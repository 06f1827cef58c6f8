package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/freeport"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
)

// clusterKey is the key the member of TestPeerPortValidatesLikeClientPort
// shares with the test, which calls its peer port as a member.
const clusterKey = "peer validation test key, long enough"

// dialPeer connects to a member's internal service on its peer port as
// another member does, with the cluster key's certificate.
func dialPeer(t *testing.T, addr string) *rpc.PeerClient {
	t.Helper()
	cfg, err := node.ClusterKeyTLS([]byte(clusterKey))
	if err != nil {
		t.Fatal(err)
	}
	return peerClient(t, addr, cfg)
}

// TestPeerPortValidatesLikeClientPort sends each invalid write to the
// client port and, as a member would, to the leader's peer service: both
// refuse it with the same error, and nothing is proposed.
func TestPeerPortValidatesLikeClientPort(t *testing.T) {
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	peerAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	s := testserver.Start(t, func(c *node.MemberConfig) {
		c.Node.PeerAddr = peerAddr
		c.Node.ClusterKey = []byte(clusterKey)
	})
	c := s.Client(t)
	kv, lease := pb.NewKVClient(c.ActiveConnection()), pb.NewLeaseClient(c.ActiveConnection())
	peer := dialPeer(t, peerAddr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Put(ctx, "/peer/a", "v"); err != nil {
		t.Fatal(err)
	}

	longKey := []byte(strings.Repeat("k", 5000))
	manyOps := make([]*pb.RequestOp, 129)
	for i := range manyOps {
		manyOps[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(fmt.Sprintf("/peer/m%03d", i))}}}
	}
	put := func(k string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}}}
	}
	// Each case calls one door with the same request.
	type door func(pb.KVClient, pb.LeaseClient, rpc.PeerBackend) (clientErr, peerErr error)
	call := func(f func(ctx context.Context, kv pb.KVClient, l pb.LeaseClient) error, p func(ctx context.Context, b rpc.PeerBackend) error) door {
		return func(kv pb.KVClient, l pb.LeaseClient, b rpc.PeerBackend) (error, error) {
			return f(ctx, kv, l), p(ctx, b)
		}
	}
	for _, tt := range []struct {
		name string
		want error // what the peer service returns, as the sentinel
		code codes.Code
		text string
		door door
	}{
		{"put empty key", fsm.ErrEmptyKey, codes.InvalidArgument, "etcdserver: key is not provided", call(
			func(ctx context.Context, kv pb.KVClient, _ pb.LeaseClient) error {
				_, err := kv.Put(ctx, &pb.PutRequest{Value: []byte("v")})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.Put(ctx, &pb.PutRequest{Value: []byte("v")})
				return err
			})},
		{"put 5,000-byte key", fsm.ErrKeyTooLong, codes.InvalidArgument, "etcdserver: key is too long", call(
			func(ctx context.Context, kv pb.KVClient, _ pb.LeaseClient) error {
				_, err := kv.Put(ctx, &pb.PutRequest{Key: longKey})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.Put(ctx, &pb.PutRequest{Key: longKey})
				return err
			})},
		{"delete empty key", fsm.ErrEmptyKey, codes.InvalidArgument, "etcdserver: key is not provided", call(
			func(ctx context.Context, kv pb.KVClient, _ pb.LeaseClient) error {
				_, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{RangeEnd: []byte{0}})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.DeleteRange(ctx, &pb.DeleteRangeRequest{RangeEnd: []byte{0}})
				return err
			})},
		{"lease TTL too large", fsm.ErrLeaseTTLTooLarge, codes.OutOfRange, "etcdserver: too large lease TTL", call(
			func(ctx context.Context, _ pb.KVClient, l pb.LeaseClient) error {
				_, err := l.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 42, TTL: fsm.MaxLeaseTTL + 1})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 42, TTL: fsm.MaxLeaseTTL + 1})
				return err
			})},
		{"txn with 129 ops", fsm.ErrTooManyOps, codes.InvalidArgument, "etcdserver: too many operations in txn request", call(
			func(ctx context.Context, kv pb.KVClient, _ pb.LeaseClient) error {
				_, err := kv.Txn(ctx, &pb.TxnRequest{Success: manyOps})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.Txn(ctx, &pb.TxnRequest{Success: manyOps})
				return err
			})},
		{"txn writing a key twice", fsm.ErrDuplicateKey, codes.InvalidArgument, "etcdserver: duplicate key given in txn request", call(
			func(ctx context.Context, kv pb.KVClient, _ pb.LeaseClient) error {
				_, err := kv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("/peer/d"), put("/peer/d")}})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{put("/peer/d"), put("/peer/d")}})
				return err
			})},
		{"txn with a nested 5,000-byte key", fsm.ErrKeyTooLong, codes.InvalidArgument, "etcdserver: key is too long", call(
			func(ctx context.Context, kv pb.KVClient, _ pb.LeaseClient) error {
				_, err := kv.Txn(ctx, &pb.TxnRequest{Failure: []*pb.RequestOp{put(string(longKey))}})
				return err
			}, func(ctx context.Context, b rpc.PeerBackend) error {
				_, err := b.Txn(ctx, &pb.TxnRequest{Failure: []*pb.RequestOp{put(string(longKey))}})
				return err
			})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, lastIndex := fingerprint(t, c), s.Node.RaftStats()["last_log_index"]
			clientErr, peerErr := tt.door(kv, lease, peer)
			if code, text := codeAndText(clientErr); code != tt.code || text != tt.text {
				t.Errorf("client port: got %v %q, want %v %q", code, text, tt.code, tt.text)
			}
			if !errors.Is(peerErr, tt.want) {
				t.Errorf("peer port: got %v, want %v (%q)", peerErr, tt.want, tt.text)
			}
			if after := fingerprint(t, c); after != before {
				t.Errorf("state changed:\nbefore %s\nafter  %s", before, after)
			}
			if got := s.Node.RaftStats()["last_log_index"]; got != lastIndex {
				t.Errorf("raft log grew from index %s to %s: the request was proposed", lastIndex, got)
			}
		})
	}
}
