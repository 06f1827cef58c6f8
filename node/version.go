package node

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/internal/release"
)

// The cluster version, as etcd has one: every member gossips the release
// it runs, and the cluster version is the oldest release among the members
// of raft's configuration, voters and non-voters alike. A member gossip
// does not see, or one of the first release (which gossips no name),
// counts as release.First. An entry kind a release introduced
// (fsm.EntryRelease) is proposed only once the cluster version is that
// release or later; until then the request is refused with etcd's "not
// capable", before anything is forwarded or proposed. Nothing is
// replicated to record the version: a member of an older release that
// comes back (a rollback) closes the gate again at once.
//
// The gate closes the other way too: the leader adds no member whose
// release is older than what the store's data needs (fsm's DataRelease)
// or than an entry this leader has proposed, and the check and the change
// it guards (the proposal, the addition) are one step under versionGate's
// lock, so neither can slip past the other.

// versionGate serialises a gated proposal's check with its enqueueing, and
// a new member's check with its addition.
type versionGate struct {
	mu sync.Mutex
	// proposed is the newest release an entry this member proposed
	// needs; it only grows.
	proposed string
	// logged is the cluster version last logged, by the membership loop.
	logged string
	// info is the etcdsql_cluster_version gauge (nil without a registry).
	info *prometheus.GaugeVec
}

// ClusterVersion returns the oldest release among the members of raft's
// configuration.
func (n *Node) ClusterVersion() string {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return release.First
	}
	var members []cluster.Member
	if n.gossip != nil {
		members = n.gossip.Members()
	}
	return clusterVersion(n.cfg.Name, f.Configuration().Servers, members)
}

// clusterVersion is the oldest release among servers, this member's being
// its own and the others' what gossip says.
func clusterVersion(self string, servers []raft.Server, members []cluster.Member) string {
	gossiped := make(map[string]string, len(members))
	for _, m := range members {
		gossiped[m.Name] = release.Of(m.Meta.Version)
	}
	names := []string{release.Name}
	for _, s := range servers {
		if string(s.ID) == self {
			continue
		}
		v, ok := gossiped[string(s.ID)]
		if !ok {
			v = release.First
		}
		names = append(names, v)
	}
	return release.Oldest(names...)
}

// capable refuses a request whose entry kind the cluster version does not
// know.
func (n *Node) capable(r *pb.InternalRaftRequest) error {
	return n.capableOf(fsm.EntryRelease(r))
}

// capableOf refuses an entry kind introduced in release need ("" for one
// this release does not apply) that the cluster version does not know.
func (n *Node) capableOf(need string) error {
	if need == release.First {
		return nil
	}
	if need == "" || !release.Knows(n.ClusterVersion(), need) {
		return ErrNotCapable
	}
	return nil
}

// enqueue hands one encoded entry, of a kind introduced in release need,
// to raft. An entry of a kind newer than
// the first release is checked against the cluster version and enqueued
// under the gate's lock, so no older member is added meanwhile.
func (n *Node) enqueue(need string, data []byte, timeout time.Duration) (raft.ApplyFuture, error) {
	if need == release.First {
		return n.apply(data, timeout), nil
	}
	n.versions.mu.Lock()
	defer n.versions.mu.Unlock()
	if err := n.capableOf(need); err != nil {
		return nil, err
	}
	if release.Compare(need, n.versions.proposed) > 0 {
		n.versions.proposed = need
	}
	return n.apply(data, timeout), nil
}

// apply hands raft a proposal, counted for the sink's sync batches.
func (n *Node) apply(data []byte, timeout time.Duration) raft.ApplyFuture {
	n.proposals.proposed.Add(1)
	return n.raft.Apply(data, timeout)
}

// admitRelease reports whether a member of release rel may be added: it
// must know every entry kind the store's data and this leader's proposals
// use. The caller holds versions.mu through the addition.
func (n *Node) admitRelease(rel string) (need string, ok bool) {
	need = n.store.DataRelease()
	if release.Compare(n.versions.proposed, need) > 0 {
		need = n.versions.proposed
	}
	return need, release.Knows(rel, need)
}

// noteClusterVersion logs the cluster version when it changes.
func (n *Node) noteClusterVersion() {
	v := n.ClusterVersion()
	n.versions.mu.Lock()
	prev := n.versions.logged
	n.versions.logged = v
	n.versions.mu.Unlock()
	if v == prev {
		return
	}
	n.log.Info("cluster version", "version", v, "was", prev, "this_member", release.Name)
	if n.versions.info != nil {
		n.versions.info.Reset()
		n.versions.info.WithLabelValues(v).Set(1)
	}
}
