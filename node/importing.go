package node

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// An import's writes (fsm/importentry.go) run on the leader like any
// write, validated at each door, and only once the cluster version knows
// their kind.

// Import replicates one import entry through the leader and waits until
// this member has applied it.
func (n *Node) Import(ctx context.Context, e *fsm.ImportEntry) (*pb.ResponseHeader, error) {
	if err := n.capableOf(fsm.ImportRelease(e.Kind)); err != nil {
		return nil, err
	}
	h, err := viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.ResponseHeader, error) { return b.Import(ctx, e) })
	if err == nil {
		n.catchUp(ctx, h.GetRevision())
	}
	return h, err
}

// ImportStatus reports the cluster's import mode after a linearizable
// wait.
func (n *Node) ImportStatus(ctx context.Context) (fsm.ImportStatus, error) {
	if err := n.linearize(ctx); err != nil {
		return fsm.ImportStatus{}, err
	}
	return n.store.Import(), nil
}

// Import proposes an import entry, validated again here. The end of the
// key space (ImportCompact) is a compaction: it waits, as Compact does,
// until the database holds its revision.
func (l leaderSide) Import(ctx context.Context, e *fsm.ImportEntry) (*pb.ResponseHeader, error) {
	n := l.n
	if err := fsm.ValidateImport(e, l.Limits()); err != nil {
		return nil, err
	}
	if c, ok := e.Msg.(*pb.CompactionRequest); ok && n.sink != nil && c.Revision > n.sink.SunkRevision() && c.Revision <= n.store.Rev() {
		if err := n.lead.waitLeading(ctx); err != nil {
			return nil, err
		}
		wctx, cancel := n.requestContext(ctx)
		err := n.sink.WaitRevision(wctx, c.Revision)
		cancel()
		if errors.Is(err, sqlsink.ErrUnhealthy) {
			return nil, ErrUnavailable
		} else if err != nil {
			return nil, ErrTimeout
		}
	}
	data, err := fsm.EncodeImport(e)
	if err != nil {
		return nil, err
	}
	if len(data) > n.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	res, err := n.proposeEncoded(ctx, data, fsm.ImportRelease(e.Kind))
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return res.Import, nil
}
