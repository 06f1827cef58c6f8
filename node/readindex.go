package node

import (
	"context"

	"github.com/etcdsql/etcdsql/rpc"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Reads. Every member answers reads and watches from its own store. A
// linearizable read first learns from the leader how far it must have
// applied (the read index, fetched by one round trip that concurrent
// reads share: the coalescer) and waits until its store has; serializable
// reads are answered at once. This part owns no state beyond the
// coalescer; the rpc services call it through the Backend methods below.

// catchUp waits, within ctx, until the local store has reached revision
// rev (a forwarded write's), so that the caller reads its own write here.
func (n *Node) catchUp(ctx context.Context, rev int64) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	waitFor(ctx, n.stop, n.store.AppliedWait, func() bool { return n.store.Rev() >= rev })
}

// linearize returns once the local store reflects every write committed
// before the call: the leader confirms it still leads and gives its commit
// index, and the local store waits until it has applied it. Concurrent
// callers share one round trip.
func (n *Node) linearize(ctx context.Context) error {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	idx, err := n.readIndex.do(ctx)
	if err != nil {
		return err
	}
	return n.waitApplied(ctx, idx)
}

// waitApplied waits until the local store has applied raft index idx.
func (n *Node) waitApplied(ctx context.Context, idx uint64) error {
	err := waitFor(ctx, n.stop, n.store.AppliedWait, func() bool { return n.store.AppliedIndex() >= idx })
	if err != nil && err != ErrStopped {
		return ErrTimeout
	}
	return err
}

// ReadBarrier returns once the local store reflects every write committed
// before the call.
func (n *Node) ReadBarrier(ctx context.Context) error { return n.linearize(ctx) }

func (n *Node) fetchReadIndex(ctx context.Context) (uint64, error) {
	return viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (uint64, error) { return b.ReadIndex(ctx) })
}

// Range serves a range: linearizable unless r.Serializable.
func (n *Node) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !r.Serializable {
		if err := n.linearize(ctx); err != nil {
			return nil, err
		}
	}
	return n.store.Range(r)
}

// LeaseLeases lists every lease.
func (n *Node) LeaseLeases(ctx context.Context) (*pb.LeaseLeasesResponse, error) {
	if err := n.linearize(ctx); err != nil {
		return nil, err
	}
	resp := &pb.LeaseLeasesResponse{Header: &pb.ResponseHeader{Revision: n.store.Rev()}}
	for _, l := range n.store.Leases() {
		resp.Leases = append(resp.Leases, &pb.LeaseStatus{ID: l.ID})
	}
	return resp, nil
}
