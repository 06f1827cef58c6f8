package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// propose replicates one request and returns what the state machine made
// of it. The caller's deadline bounds the wait.
func (n *Node) propose(ctx context.Context, r *pb.InternalRaftRequest) (*fsm.Result, error) {
	if r.Size() > n.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	data, err := fsm.Encode(r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.waitReady(ctx); err != nil {
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
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, ErrNoLeader
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrStopped
		default: // ErrLeadershipLost, ErrEnqueueTimeout: outcome unknown
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

// linearize returns once the local store reflects every write committed
// before the call: the leader confirms it still leads, and the store waits
// until it has applied the commit index read before that confirmation.
func (n *Node) linearize(ctx context.Context) error {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.waitReady(ctx); err != nil {
		return err
	}
	idx := n.raft.CommitIndex()
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return ErrNoLeader
	}
	if idx <= n.barrierIdx.Load() {
		return nil
	}
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
	res, err := n.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	return res.Put, res.Err
}

// DeleteRange replicates a delete.
func (n *Node) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	res, err := n.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	return res.DeleteRange, res.Err
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
	res, err := n.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	return res.Txn, res.Err
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

// Compact replicates a compaction. It never passes the database's
// high-water mark: history the database lacks is kept until it has it.
func (n *Node) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if n.sink != nil && r.Revision > n.sink.SunkRevision() && r.Revision <= n.store.Rev() {
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

// LeaseGrant replicates a grant, choosing an unused ID when r.ID is 0.
func (n *Node) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.TTL > fsm.MaxLeaseTTL {
		return nil, fsm.ErrLeaseTTLTooLarge
	}
	req := *r
	for req.ID == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		req.ID = int64(binary.BigEndian.Uint64(b[:]) &^ (1 << 63))
		if _, taken := n.store.Lease(req.ID, false); taken {
			req.ID = 0
		}
	}
	res, err := n.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: &req})
	if err != nil {
		return nil, err
	}
	return res.LeaseGrant, res.Err
}

// LeaseRevoke replicates a revoke.
func (n *Node) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	res, err := n.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: r})
	if err != nil {
		return nil, err
	}
	return res.LeaseRevoke, res.Err
}

// LeaseRenew restarts a lease's TTL (one keepalive) and returns the TTL.
func (n *Node) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.waitReady(ctx); err != nil {
		return 0, err
	}
	return n.lessor.renew(id, time.Now())
}

// LeaseTimeToLive reports a lease's granted and remaining TTL.
func (n *Node) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := n.linearize(ctx); err != nil {
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

// NewWatchStream opens a watch stream over the local store.
func (n *Node) NewWatchStream() *fsm.WatchStream { return n.store.NewWatchStream() }
