package node

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/rpc"
)

// Writes, lease calls and read indexes are answered by the leader. A
// member that leads answers them itself (leaderSide); any other member
// forwards them over the peer port's internal service, with the caller's
// deadline. The leader's side never forwards again.

// leaderBackend returns who answers for the leader: this member, or a
// client of the leader's internal service (and the leader's peer
// address). It waits, within ctx, for a leader to be known.
func (n *Node) leaderBackend(ctx context.Context) (rpc.PeerBackend, string, error) {
	addr, err := n.lead.waitLeader(ctx)
	if err != nil {
		return nil, "", err
	}
	if addr == "" {
		return leaderSide{n}, "", nil
	}
	c, err := n.peer.Client(addr)
	return c, addr, err
}

// viaLeader runs call against the leader. A member that turned out not to
// lead answered before proposing anything, and a leader that could not be
// reached got nothing, so the call is retried with whoever leads now until
// ctx ends; a leader that could not be reached is dialed again at once (it
// may have restarted) instead of after the connection's backoff.
func viaLeader[T any](n *Node, ctx context.Context, call func(context.Context, rpc.PeerBackend) (T, error)) (T, error) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	for {
		b, addr, err := n.leaderBackend(ctx)
		if err != nil {
			var zero T
			return zero, err
		}
		resp, err := call(ctx, b)
		if errors.Is(err, rpc.ErrPeerUnreachable) {
			n.peer.Redial(addr)
		} else if !errors.Is(err, ErrNotLeader) {
			return resp, err
		}
		// A short pause: the member asked may know of the new leader
		// before this one does.
		select {
		case <-ctx.Done():
			return resp, ErrNoLeader
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// write runs a write on the leader, then waits (within ctx) until this
// member has applied its revision, so that a client reading from this
// member afterwards, even serializably, sees its own write.
func write[T interface{ GetHeader() *pb.ResponseHeader }](n *Node, ctx context.Context, call func(context.Context, rpc.PeerBackend) (T, error)) (T, error) {
	resp, err := viaLeader(n, ctx, call)
	if err == nil {
		n.catchUp(ctx, resp.GetHeader().GetRevision())
	}
	return resp, err
}

// Put replicates a put.
func (n *Node) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return write(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.PutResponse, error) { return b.Put(ctx, r) })
}

// DeleteRange replicates a delete.
func (n *Node) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return write(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.DeleteRangeResponse, error) {
		return b.DeleteRange(ctx, r)
	})
}

// Txn replicates a transaction; one without writes is answered locally
// (after a linearizable wait unless every range in it is serializable).
func (n *Node) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if fsm.IsTxnReadOnly(r) {
		if !txnSerializable(r) {
			if err := n.linearize(ctx); err != nil {
				return nil, err
			}
		}
		return n.store.TxnReadOnly(r)
	}
	return write(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.TxnResponse, error) { return b.Txn(ctx, r) })
}

func txnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if !v.RequestRange.Serializable {
					return false
				}
			case *pb.RequestOp_RequestTxn:
				if !txnSerializable(v.RequestTxn) {
					return false
				}
			}
		}
	}
	return true
}

// Compact replicates a compaction.
func (n *Node) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return write(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.CompactionResponse, error) {
		return b.Compact(ctx, r)
	})
}

// LeaseGrant replicates a grant; the leader chooses an unused ID when
// r.ID is 0.
func (n *Node) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return write(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.LeaseGrantResponse, error) {
		return b.LeaseGrant(ctx, r)
	})
}

// LeaseRevoke replicates a revoke.
func (n *Node) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return write(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.LeaseRevokeResponse, error) {
		return b.LeaseRevoke(ctx, r)
	})
}

// LeaseRenew restarts a lease's TTL on the leader (one keepalive) and
// returns the TTL.
func (n *Node) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	return viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (int64, error) { return b.LeaseRenew(ctx, id) })
}

// LeaseTimeToLive reports a lease's granted and remaining TTL, which only
// the leader knows.
func (n *Node) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.LeaseTimeToLiveResponse, error) {
		return b.LeaseTimeToLive(ctx, r)
	})
}

// MemberRemove removes a member from the raft configuration.
func (n *Node) MemberRemove(ctx context.Context, id uint64) error {
	_, err := viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (struct{}, error) {
		return struct{}{}, b.MemberRemove(ctx, id)
	})
	return err
}
