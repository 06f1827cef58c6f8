package node

import (
	"context"
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
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
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
