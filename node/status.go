package node

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/rpc"
)

// Status: what a member says about itself and the cluster to clients,
// load balancers and dashboards: health (/health), Maintenance.Status,
// the member list, and the metrics. It reads the other parts' state and
// owns none.

// ClusterID returns the cluster's ID.
func (n *Node) ClusterID() uint64 { return n.clusterID.Load() }

// MemberID returns this member's ID.
func (n *Node) MemberID() uint64 { return n.memberID }

// Term returns the current raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Healthy reports ErrNoLeader when no leader is known.
func (n *Node) Healthy() error {
	if _, id := n.raft.LeaderWithID(); id == "" {
		return ErrNoLeader
	}
	return nil
}

// WaitLeader waits until a leader is known: ErrNoLeader when ctx ends
// first, ErrStopped once the node stops.
func (n *Node) WaitLeader(ctx context.Context) error {
	_, err := n.lead.waitLeader(ctx)
	return err
}

// startupCheck waits, for a member that becomes leader soon after start,
// until its sink has checked the database, and returns what needs an
// operator (database ahead of or behind this member's state, fenced).
func (n *Node) startupCheck() error {
	if n.sink == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*n.cfg.ElectionTimeout)
	defer cancel()
	// Another member leading: its sink checks, and this one's when it
	// leads. (Waiting for this member to lead would hold a follower's
	// start, and a signal then, for the whole wait.)
	if other, err := n.lead.waitLeader(ctx); err != nil || other != "" {
		return nil
	}
	if n.lead.waitReady(ctx) != nil {
		return nil // not the leader (yet): its sink checks when it leads
	}
	for {
		if err := n.SinkFatal(); err != nil {
			return fmt.Errorf("node: %w", err)
		}
		if n.sink.Checked() || ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// SinkHealthy reports whether the system of record takes writes: nil, or
// why not, wrapping rpc.ErrStorageRefused when the database refuses an
// entry's data.
func (n *Node) SinkHealthy() error {
	// Only the leader writes to the database; what the others last saw
	// of it may be stale.
	if n.sink == nil || !n.IsLeader() {
		return nil
	}
	if err := n.sink.Refused(); err != nil {
		return fmt.Errorf("%w: %w", ErrStorageRefused, err)
	}
	return n.sink.Healthy()
}

// Members lists the raft members with their advertised URLs.
func (n *Node) Members(ctx context.Context) ([]*pb.Member, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, ErrStopped
	}
	var out []*pb.Member
	for _, s := range f.Configuration().Servers {
		m := &pb.Member{ID: MemberID(string(s.ID)), Name: string(s.ID), IsLearner: s.Suffrage != raft.Voter}
		if string(s.ID) == n.cfg.Name {
			m.ClientURLs = n.cfg.ClientURLs
			m.PeerURLs = n.cfg.PeerURLs
		} else if g, ok := n.gossipMember(string(s.ID)); ok {
			// A member gossip sees failed keeps its place but offers no
			// client URL, so clients that sync endpoints leave it alone.
			if g.State != cluster.StateFailed && g.State != cluster.StateLeft {
				m.ClientURLs = g.Meta.ClientURLs
			}
			m.PeerURLs = g.Meta.PeerURLs
		}
		if len(m.PeerURLs) == 0 {
			m.PeerURLs = []string{"http://" + string(s.Address)}
		}
		out = append(out, m)
	}
	return out, nil
}

// Status answers Maintenance.Status.
func (n *Node) Status(ctx context.Context) (*pb.StatusResponse, error) {
	resp := &pb.StatusResponse{
		Header:           &pb.ResponseHeader{Revision: n.store.Rev(), MemberId: n.memberID},
		Version:          rpc.ServerVersion,
		RaftIndex:        n.raft.LastIndex(),
		RaftTerm:         n.raft.CurrentTerm(),
		RaftAppliedIndex: n.store.AppliedIndex(),
		DbSize:           n.dbSize(),
	}
	resp.DbSizeInUse = resp.DbSize
	if _, id := n.raft.LeaderWithID(); id != "" {
		resp.Leader = MemberID(string(id))
	}
	if n.Healthy() != nil {
		resp.Errors = []string{"etcdserver: no leader"}
	}
	return resp, nil
}

// dbSize is the size of the raft log's files, which Status reports as
// etcd's backend size.
func (n *Node) dbSize() int64 {
	var size int64
	dir := filepath.Join(n.cfg.DataDir, "raft")
	for _, p := range []string{filepath.Join(dir, boltLogFile), filepath.Join(dir, walLogDir)} {
		filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
			return nil
		})
	}
	return size
}

func (n *Node) registerMetrics(reg prometheus.Registerer) {
	boolGauge := func(f func() bool) func() float64 {
		return func() float64 {
			if f() {
				return 1
			}
			return 0
		}
	}
	n.versions.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "etcdsql_cluster_version",
		Help: "Always 1; its label is the cluster version: the oldest release among the members."}, []string{"release"})
	reg.MustRegister(n.versions.info,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_server_has_leader", Help: "Whether a leader is known (1) or not (0)."},
			boolGauge(func() bool { return n.Healthy() == nil })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_server_is_leader", Help: "Whether this member leads (1) or not (0)."},
			boolGauge(func() bool { return n.raft.State() == raft.Leader })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_applied_revision", Help: "The store revision applied on this member."},
			func() float64 { return float64(n.store.Rev()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_sink_lag_revisions", Help: "Revisions applied but not yet in the database."},
			func() float64 {
				if n.sink == nil {
					return 0
				}
				return float64(max(0, n.store.Rev()-n.sink.SunkRevision()))
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_compact_revision", Help: "The compact revision on this member."},
			func() float64 { _, c := n.store.Revs(); return float64(c) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_raft_applied_index", Help: "The raft index applied to the store."},
			func() float64 { return float64(n.store.AppliedIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_server_proposals_committed_total", Help: "The raft commit index."},
			func() float64 { return float64(n.raft.CommitIndex()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_raft_term", Help: "The current raft term."},
			func() float64 { return float64(n.raft.CurrentTerm()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_cluster_failed_members", Help: "Members of the raft configuration that gossip sees failed."},
			func() float64 { return float64(n.failedMembers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_cluster_voters", Help: "Voting members in the raft configuration."},
			func() float64 { v, _ := n.configCounts(); return float64(v) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcdsql_cluster_nonvoters", Help: "Non-voting members in the raft configuration."},
			func() float64 { _, nv := n.configCounts(); return float64(nv) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_mvcc_db_total_size_in_bytes", Help: "Size of the raft log database file."},
			func() float64 { return float64(n.dbSize()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "etcd_debugging_mvcc_keys_total", Help: "Live keys in the store."},
			func() float64 { return float64(n.store.KeyCount()) }),
	)
}

func (n *Node) peerCount() int {
	v, nv := n.configCounts()
	return max(0, v+nv-1)
}

func (n *Node) configCounts() (voters, nonvoters int) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0, 0
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		} else {
			nonvoters++
		}
	}
	return voters, nonvoters
}

func (n *Node) failedMembers() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	failed := 0
	for _, s := range f.Configuration().Servers {
		if g, ok := n.gossipMember(string(s.ID)); ok && g.State == cluster.StateFailed {
			failed++
		}
	}
	return failed
}

// IsLeader reports whether this member leads and is ready to serve as
// leader.
func (n *Node) IsLeader() bool { return n.lead.isReady() }

// RaftStats returns raft's own counters (last_snapshot_index, num_peers,
// ...), for tests and debugging.
func (n *Node) RaftStats() map[string]string { return n.raft.Stats() }
