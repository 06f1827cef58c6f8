package rpc

import (
	"context"
	"os"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/etcdbackend"
)

// Snapshot sends this member's store as etcd 3.4's backend file, the way
// etcd does: the database in chunks with the bytes still to come, then its
// sha256 sum, which `etcdctl snapshot save` checks and `etcdctl snapshot
// restore` verifies. The file is built from one point-in-time copy of the
// store (every retained version since the compact revision, the leases,
// the auth store) in a temporary file under Config.SnapshotDir, removed
// once sent. With authentication on, only root may take one (the stream
// interceptor checks it).
func (m *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	s := m.s
	start := time.Now()
	snap := s.b.StoreSnapshot()
	n, err := s.sendSnapshot(srv.Context(), snap, func(blob []byte, remaining uint64) error {
		return srv.Send(&pb.SnapshotResponse{RemainingBytes: remaining, Blob: blob})
	})
	s.metrics.snapshotBytes.Add(float64(n))
	switch {
	case err == nil:
		s.metrics.snapshots.WithLabelValues("sent").Inc()
		s.metrics.snapshotSeconds.Observe(time.Since(start).Seconds())
		s.log.Info("snapshot sent", "rev", snap.Rev(), "bytes", n, "took", time.Since(start))
		return nil
	case srv.Context().Err() != nil:
		s.metrics.snapshots.WithLabelValues("canceled").Inc()
		s.log.Debug("snapshot stream closed by client", "rev", snap.Rev(), "bytes", n, "err", err)
		return status.FromContextError(srv.Context().Err()).Err()
	default:
		s.metrics.snapshots.WithLabelValues("failed").Inc()
		s.log.Warn("snapshot failed", "rev", snap.Rev(), "bytes", n, "err", err)
		return togRPCError(err)
	}
}

// sendSnapshot builds the backend file of snap and sends it; it returns
// the database bytes sent.
func (s *Server) sendSnapshot(ctx context.Context, snap *fsm.Snapshot, send func([]byte, uint64) error) (int64, error) {
	f, err := os.CreateTemp(s.cfg.SnapshotDir, "etcdsql-snapshot-*.db")
	if err != nil {
		return 0, err
	}
	path := f.Name()
	defer os.Remove(path)
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := etcdbackend.WriteDB(ctx, path, backendState(snap.Export())); err != nil {
		return 0, err
	}
	return etcdbackend.Stream(path, send)
}

// backendState maps a store's export to etcd's backend: the same
// versions, the leases with their whole TTL left (etcd restarts lease
// clocks on restore too), and the auth store, whose revision etcd counts
// from 1.
func backendState(e fsm.Export) *etcdbackend.State {
	st := &etcdbackend.State{Rev: e.Rev, CompactRev: max(e.CompactRev, 0), ConsistentIndex: e.AppliedIndex,
		History: make([]*mvccpb.Event, len(e.Changes)), Leases: make([]etcdbackend.Lease, len(e.Leases)),
		Auth: etcdbackend.Auth{Enabled: e.Auth.Enabled, Revision: e.Auth.Revision + 1, Users: e.Auth.Users, Roles: e.Auth.Roles}}
	for i, c := range e.Changes {
		typ := mvccpb.PUT
		if c.Deleted {
			typ = mvccpb.DELETE
		}
		st.History[i] = &mvccpb.Event{Type: typ, Kv: c.KV}
	}
	for i, l := range e.Leases {
		st.Leases[i] = etcdbackend.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.TTL}
	}
	return st
}
