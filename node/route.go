package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
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
	c, err := n.peer.client(addr)
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
			n.peer.redial(addr)
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

func (n *Node) catchUp(ctx context.Context, rev int64) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	for {
		ch := n.store.AppliedWait()
		if n.store.Rev() >= rev {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-n.stop:
			return
		}
	}
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
	for {
		ch := n.store.AppliedWait()
		if n.store.AppliedIndex() >= idx {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ErrTimeout
		case <-n.stop:
			return ErrStopped
		}
	}
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

// MemberRemove removes a member from the raft configuration.
func (n *Node) MemberRemove(ctx context.Context, id uint64) error {
	_, err := viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (struct{}, error) {
		return struct{}{}, b.MemberRemove(ctx, id)
	})
	return err
}

// leaderSide is this member answering as the leader, for its own clients
// and for the other members. Each call fails with ErrNotLeader, before
// anything is proposed, when this member does not lead.
type leaderSide struct{ n *Node }

var (
	_ rpc.PeerBackend = leaderSide{}
	_ rpc.PeerLimits  = leaderSide{}
)

// Limits are the bounds the peer service validates writes with: the
// store's, which StartMember also gives the client port.
func (l leaderSide) Limits() fsm.Limits {
	return fsm.Limits{MaxKeyBytes: l.n.cfg.FSM.MaxKeyBytes}
}

func (l leaderSide) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	res, err := l.n.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	return res.Put, res.Err
}

func (l leaderSide) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	res, err := l.n.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	return res.DeleteRange, res.Err
}

func (l leaderSide) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	res, err := l.n.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	return res.Txn, res.Err
}

// Compact never passes the database's high-water mark: history the
// database lacks is kept until it has it.
func (l leaderSide) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	n := l.n
	if n.sink != nil && r.Revision > n.sink.SunkRevision() && r.Revision <= n.store.Rev() {
		if err := n.lead.waitLeading(ctx); err != nil {
			return nil, err
		}
		ctx, cancel := n.requestContext(ctx)
		defer cancel()
		if err := n.sink.WaitRevision(ctx, r.Revision); errors.Is(err, sqlsink.ErrUnhealthy) {
			return nil, ErrUnavailable
		} else if err != nil {
			return nil, ErrTimeout
		}
	}
	res, err := n.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	return res.Compaction, res.Err
}

func (l leaderSide) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	req := *r
	for req.ID == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		req.ID = int64(binary.BigEndian.Uint64(b[:]) &^ (1 << 63))
		if _, taken := l.n.store.Lease(req.ID, false); taken {
			req.ID = 0
		}
	}
	res, err := l.n.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: &req})
	if err != nil {
		return nil, err
	}
	return res.LeaseGrant, res.Err
}

func (l leaderSide) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	res, err := l.n.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: r})
	if err != nil {
		return nil, err
	}
	return res.LeaseRevoke, res.Err
}

func (l leaderSide) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	ctx, cancel := l.n.requestContext(ctx)
	defer cancel()
	if err := l.n.lead.waitLeading(ctx); err != nil {
		return 0, err
	}
	return l.n.lessor.renew(id, time.Now())
}

func (l leaderSide) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	n := l.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	idx, err := l.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return nil, err
	}
	info, ok := n.store.Lease(r.ID, r.Keys)
	if !ok {
		return nil, fsm.ErrLeaseNotFound
	}
	ttl, err := n.lessor.remaining(info, time.Now())
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{
		Header: &pb.ResponseHeader{Revision: n.store.Rev()}, ID: info.ID, TTL: ttl, GrantedTTL: info.TTL, Keys: info.Keys,
	}, nil
}

// ReadIndex confirms this member still leads and returns how far a read
// must have applied: the last request among the entries committed before
// the call. Raft's own entries after it (no-ops, configuration) change
// nothing a read sees, and a follower may not learn of their commit at
// once.
func (l leaderSide) ReadIndex(ctx context.Context) (uint64, error) {
	n := l.n
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.lead.waitLeading(ctx); err != nil {
		return 0, err
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, ErrNotLeader
	}
	if err := n.waitApplied(ctx, idx); err != nil {
		return 0, err
	}
	return n.store.LastChangeIndex(), nil
}

func (l leaderSide) MemberRemove(ctx context.Context, id uint64) error {
	return l.n.removeMember(ctx, id)
}

func (l leaderSide) Status(ctx context.Context) (*pb.StatusResponse, error) {
	return l.n.Status(ctx)
}
