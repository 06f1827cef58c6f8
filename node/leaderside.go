package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The leader's side: leaderSide answers as the leader, for this member's
// own clients (through forward.go) and for the other members (the peer
// service). Each call fails with ErrNotLeader, before anything is
// proposed, when this member does not lead, so a forwarded request never
// loops. propose is the only way a request (a client's, or the lease
// clock's revoke) reaches raft; only the leadership part appends no-ops.

// leaderSide is this member answering as the leader, for its own clients
// and for the other members. Each call fails with ErrNotLeader, before
// anything is proposed, when this member does not lead.
type leaderSide struct{ n *Node }

var (
	_ rpc.PeerBackend = leaderSide{}
	_ rpc.PeerLimits  = leaderSide{}
	_ rpc.PeerAuth    = leaderSide{}
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
	if l.n.store.Importing() {
		return 0, fsm.ErrImporting
	}
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
	if !n.requests.begin() {
		return 0, ErrStopped
	}
	err := n.raft.VerifyLeader().Error()
	n.requests.end()
	if err != nil {
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

// propose replicates one request and returns what the state machine made
// of it. The caller's deadline bounds the wait.
func (n *Node) propose(ctx context.Context, r *pb.InternalRaftRequest) (*fsm.Result, error) {
	if r.Size() > n.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	// Refused here while the cluster imports, as the store would refuse
	// it (for a request whose kind it knows), without a round through raft.
	if n.store.Importing() && fsm.EntryRelease(r) != "" && !(r.Txn != nil && fsm.IsTxnReadOnly(r.Txn)) {
		return nil, fsm.ErrImporting
	}
	data, err := fsm.Encode(r)
	if err != nil {
		return nil, err
	}
	return n.proposeEncoded(ctx, data, fsm.EntryRelease(r))
}

// proposeEncoded replicates one encoded entry, of a kind introduced in
// release need.
func (n *Node) proposeEncoded(ctx context.Context, data []byte, need string) (*fsm.Result, error) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.lead.waitLeading(ctx); err != nil {
		return nil, err
	}
	// With the database down nothing is proposed: the client learns at
	// once, and no write is left with an unknown outcome.
	if n.sink != nil {
		if err := n.sink.Healthy(); err != nil {
			return nil, ErrUnavailable
		}
	}
	timeout := time.Until(deadlineOf(ctx))
	if timeout <= 0 {
		return nil, ErrTimeout
	}
	if !n.requests.begin() {
		return nil, ErrStopped
	}
	f, err := n.enqueue(need, data, timeout)
	if err != nil {
		n.requests.end()
		return nil, err
	}
	// In flight until answered, the database's commit included with sync
	// acks: a leader that hands over waits for it while its sink still
	// runs (once leadership moved, the sink stops, and the wait could end
	// only on the deadline, the write's outcome unknown to its client).
	defer n.requests.end()
	if err = f.Error(); err != nil {
		n.proposals.failed(err)
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// Not proposed: the caller retries with the next leader (a
			// leader hands over before it stops, and refuses new
			// entries meanwhile).
			return nil, ErrNotLeader
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrStopped
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, ErrLeaderChanged // outcome unknown
		default: // ErrEnqueueTimeout: outcome unknown
			return nil, ErrTimeout
		}
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, ErrTimeout
	}
	if n.sink != nil && n.sink.Ack() == sqlsink.AckSync {
		if err := n.sink.WaitIndex(ctx, f.Index()); err != nil {
			return nil, ErrTimeout // committed, but not yet in the database
		}
	}
	return res, nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// NewWatchStream opens a watch stream over the local store.
func (n *Node) NewWatchStream() *fsm.WatchStream { return n.store.NewWatchStream() }

// StoreSnapshot is a point-in-time copy of the store. Safe for concurrent use.
func (n *Node) StoreSnapshot() *fsm.Snapshot { return n.store.Snapshot() }
