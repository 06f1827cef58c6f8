package node

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/hashicorp/raft"
)

// Formation: how a member without raft state enters a cluster. A member
// with raft state restarts as it was; one without decides, from what
// gossip shows, to join a formed cluster (a member gossips its cluster
// ID) or to bootstrap one together with BootstrapExpect voters that see
// each other and none of which belongs to a cluster. The decision is a
// pure function of its inputs (decideFormation); awaitFormation gathers
// them from gossip until it can decide. Called once, by raft's setup.

// formation is how a member without raft state enters the cluster.
type formation struct {
	join      bool          // an existing cluster adds this member
	servers   []raft.Server // or: bootstrap with these voters
	clusterID uint64
}

// decideFormation decides from the gossip members seen (self excluded) and
// this member's own gossip record. ok is false while it must wait: then
// seen is how many voters it sees, itself included.
func decideFormation(self cluster.Member, members []cluster.Member, expect int, nonvoter bool) (f formation, ok bool, seen int, err error) {
	var voters []cluster.Member
	for _, m := range members {
		if m.State != cluster.StateAlive || m.Name == self.Name {
			continue
		}
		if m.Meta.ClusterID != "" {
			id, err := strconv.ParseUint(m.Meta.ClusterID, 16, 64)
			if err != nil {
				return formation{}, false, 0, fmt.Errorf("node: member %s gossips a bad cluster id %q", m.Name, m.Meta.ClusterID)
			}
			return formation{join: true, clusterID: id}, true, 0, nil
		}
		if m.Meta.Role == cluster.RoleVoter && m.Meta.RaftAddr != "" {
			voters = append(voters, m)
		}
	}
	if expect <= 0 || nonvoter || len(voters)+1 < expect {
		return formation{}, false, len(voters) + 1, nil
	}
	voters = append(voters, self)
	slices.SortFunc(voters, func(a, b cluster.Member) int { return strings.Compare(a.Name, b.Name) })
	h := fnv.New64a()
	for _, v := range voters {
		f.servers = append(f.servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.Name), Address: raft.ServerAddress(v.Meta.RaftAddr)})
		h.Write([]byte(v.Name + "/" + v.Meta.Nonce + "\n"))
	}
	f.clusterID = h.Sum64() &^ (1 << 63)
	return f, true, len(voters), nil
}

// awaitFormation waits, gossiping, until decideFormation decides: this
// member either sees a formed cluster (it will be added to it) or enough
// voters to bootstrap one with (each of them with the same configuration).
func (n *Node) awaitFormation() (formation, error) {
	lastLog := time.Now()
	for {
		changed := n.gossip.Changed()
		f, ok, seen, err := decideFormation(n.gossipSelf(), n.gossip.Members(), n.cfg.BootstrapExpect, n.cfg.Nonvoter)
		if err != nil || ok {
			if f.join {
				n.log.Info("found a formed cluster: waiting to be added", "cluster_id", strconv.FormatUint(f.clusterID, 16))
			}
			return f, err
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			n.log.Info("waiting for servers to form a cluster", "expect", n.cfg.BootstrapExpect, "seen", seen)
			if len(n.cfg.Gossip.Join) > 0 {
				n.gossip.Join(n.cfg.Gossip.Join)
			}
		}
		select {
		case <-changed:
		case <-time.After(time.Second):
			// Retry the join addresses while nobody answered yet.
			if seen <= 1 && len(n.cfg.Gossip.Join) > 0 {
				n.gossip.Join(n.cfg.Gossip.Join)
			}
		case <-n.stop:
			return formation{}, ErrStopped
		}
	}
}

func (n *Node) gossipSelf() cluster.Member {
	if m, ok := n.gossipMember(n.cfg.Name); ok {
		return m
	}
	return cluster.Member{Name: n.cfg.Name, Meta: cluster.Meta{RaftAddr: n.advertisePeer()}}
}

// adoptClusterID records the cluster this member belongs to and says so in
// gossip.
func (n *Node) adoptClusterID(id uint64) error {
	n.clusterID.Store(id)
	path := filepath.Join(n.cfg.DataDir, "cluster_id")
	if err := os.WriteFile(path, []byte(strconv.FormatUint(id, 16)+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: cluster id: %w", err)
	}
	if n.gossip != nil {
		return n.gossip.UpdateMeta(func(m *cluster.Meta) { m.ClusterID = strconv.FormatUint(id, 16) }, 5*time.Second)
	}
	return nil
}
