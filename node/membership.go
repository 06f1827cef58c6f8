package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/cluster"
)

// Membership: gossip (package cluster) tells every member who is around;
// raft's configuration says who is in the cluster. The leader reconciles
// the two: a new member is added as a non-voter and promoted once it has
// caught up (unless it asked to stay a non-voter), a member that left
// gracefully is removed, a failed one is only reported, and removed after
// DeadServerCleanup if that policy is set.

// catchUpEntries is how far behind the leader's applied index a non-voter
// may be and still be promoted.
const catchUpEntries = 256

// startGossip joins the gossip cluster, saying who this member is.
func (n *Node) startGossip() error {
	if n.cfg.Gossip == nil {
		return nil
	}
	gc := *n.cfg.Gossip
	gc.Name = n.cfg.Name
	if gc.Logger == nil {
		gc.Logger = n.baseLog
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	if len(n.cfg.ClusterKey) > 0 {
		key, err := GossipKey(n.cfg.ClusterKey)
		if err != nil {
			return err
		}
		gc.SecretKey = key
	}
	gc.Meta.RaftAddr = n.advertisePeer()
	gc.Meta.ClientURLs = n.cfg.ClientURLs
	gc.Meta.PeerURLs = n.cfg.PeerURLs
	gc.Meta.Nonce = hex.EncodeToString(nonce[:])
	gc.Meta.Role = cluster.RoleVoter
	if n.cfg.Nonvoter {
		gc.Meta.Role = cluster.RoleNonvoter
	}
	if id := n.ClusterID(); id != 0 {
		gc.Meta.ClusterID = strconv.FormatUint(id, 16)
	}
	c, err := cluster.Start(gc)
	if err != nil {
		return err
	}
	n.gossip = c
	return nil
}

func (n *Node) advertisePeer() string {
	if n.cfg.AdvertisePeerAddr != "" {
		return n.cfg.AdvertisePeerAddr
	}
	return n.cfg.PeerAddr
}

// formation is how a member without raft state enters the cluster.
type formation struct {
	join      bool          // an existing cluster adds this member
	servers   []raft.Server // or: bootstrap with these voters
	clusterID uint64
}

// awaitFormation waits, gossiping, until this member either sees a formed
// cluster (it will be added to it) or BootstrapExpect voters that have
// none (together they bootstrap one, each with the same configuration).
func (n *Node) awaitFormation() (formation, error) {
	lastLog := time.Now()
	for {
		members := n.gossip.Members()
		var voters []cluster.Member
		for _, m := range members {
			if m.State != cluster.StateAlive || m.Name == n.cfg.Name {
				continue
			}
			if m.Meta.ClusterID != "" {
				id, err := strconv.ParseUint(m.Meta.ClusterID, 16, 64)
				if err != nil {
					return formation{}, fmt.Errorf("node: member %s gossips a bad cluster id %q", m.Name, m.Meta.ClusterID)
				}
				n.log.Info("found a formed cluster: waiting to be added", "via", m.Name, "cluster_id", m.Meta.ClusterID)
				return formation{join: true, clusterID: id}, nil
			}
			if m.Meta.Role == cluster.RoleVoter && m.Meta.RaftAddr != "" {
				voters = append(voters, m)
			}
		}
		if n.cfg.BootstrapExpect > 0 && !n.cfg.Nonvoter && len(voters)+1 >= n.cfg.BootstrapExpect {
			self := n.gossipSelf()
			voters = append(voters, self)
			slices.SortFunc(voters, func(a, b cluster.Member) int { return strings.Compare(a.Name, b.Name) })
			f := formation{}
			h := fnv.New64a()
			for _, v := range voters {
				f.servers = append(f.servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(v.Name), Address: raft.ServerAddress(v.Meta.RaftAddr)})
				h.Write([]byte(v.Name + "/" + v.Meta.Nonce + "\n"))
			}
			f.clusterID = h.Sum64() &^ (1 << 63)
			return f, nil
		}
		if time.Since(lastLog) > 10*time.Second {
			lastLog = time.Now()
			n.log.Info("waiting for servers to form a cluster", "expect", n.cfg.BootstrapExpect, "seen", len(voters)+1)
			if len(n.cfg.Gossip.Join) > 0 {
				n.gossip.Join(n.cfg.Gossip.Join)
			}
		}
		select {
		case <-n.gossip.Changed():
		case <-time.After(time.Second):
			if len(voters) == 0 && len(n.cfg.Gossip.Join) > 0 {
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

// reconcileMembers runs on every member and acts while it leads.
func (n *Node) reconcileMembers() {
	defer n.wg.Done()
	failedSince := map[string]time.Time{}
	refused := map[string]time.Time{} // last warning about a member that failed authentication
	var lastJoin time.Time
	for {
		var changed <-chan struct{}
		if n.gossip != nil {
			changed = n.gossip.Changed()
		}
		select {
		case <-n.stop:
			return
		case <-changed:
		case <-time.After(time.Second):
		}
		// A member whose join found no one (the others were down) keeps
		// trying, so that it is seen again once they are back.
		if n.gossip != nil && len(n.cfg.Gossip.Join) > 0 && time.Since(lastJoin) > 10*time.Second && n.gossipAlive() < n.peerCount()+1 {
			lastJoin = time.Now()
			n.gossip.Join(n.cfg.Gossip.Join)
		}
		if !n.lead.isReady() {
			continue
		}
		n.lead.hasPeers.Store(n.peerCount() > 0)
		if n.gossip == nil {
			continue
		}
		if err := n.reconcileOnce(failedSince, refused); err != nil {
			n.log.Warn("membership change failed", "err", err)
		}
	}
}

func (n *Node) reconcileOnce(failedSince, refused map[string]time.Time) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	conf := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range f.Configuration().Servers {
		conf[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	myID := strconv.FormatUint(n.ClusterID(), 16)
	const timeout = 10 * time.Second
	for _, m := range n.gossip.Members() {
		id := raft.ServerID(m.Name)
		s, inConf := conf[id]
		if m.Name == n.cfg.Name {
			continue
		}
		if m.State != cluster.StateFailed {
			delete(failedSince, m.Name)
		}
		switch m.State {
		case cluster.StateAlive:
			if (m.Meta.ClusterID != "" && m.Meta.ClusterID != myID) || m.Meta.RaftAddr == "" || m.Meta.Leaving {
				continue
			}
			if n.isEvicted(m.Name) {
				continue
			}
			addr := raft.ServerAddress(m.Meta.RaftAddr)
			if (!inConf || s.Address != addr) && !n.authenticated(m, refused) {
				continue
			}
			switch {
			case !inConf:
				n.log.Info("adding member as non-voter", "member", m.Name, "addr", addr)
				if err := n.raft.AddNonvoter(id, addr, 0, timeout).Error(); err != nil {
					return err
				}
			case s.Address != addr:
				n.log.Info("member moved", "member", m.Name, "from", s.Address, "to", addr)
				add := n.raft.AddNonvoter
				if s.Suffrage == raft.Voter {
					add = n.raft.AddVoter
				}
				if err := add(id, addr, 0, timeout).Error(); err != nil {
					return err
				}
			case s.Suffrage == raft.Nonvoter && m.Meta.Role == cluster.RoleVoter:
				if voters >= n.cfg.voterLimit() || !n.caughtUp(m) {
					continue
				}
				n.log.Info("promoting caught-up member to voter", "member", m.Name)
				if err := n.raft.AddVoter(id, addr, 0, timeout).Error(); err != nil {
					return err
				}
				voters++
			}
		case cluster.StateLeft:
			if inConf {
				n.log.Info("removing member that left", "member", m.Name)
				if err := n.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
					return err
				}
			}
			n.gossip.Forget(m.Name)
		case cluster.StateFailed:
			if _, ok := failedSince[m.Name]; !ok {
				failedSince[m.Name] = time.Now()
				if inConf {
					n.log.Warn("member failed: it stays in the cluster until removed", "member", m.Name)
				}
			}
			if !inConf || n.cfg.DeadServerCleanup <= 0 || time.Since(failedSince[m.Name]) < n.cfg.DeadServerCleanup {
				continue
			}
			// Only while the others still form a majority of what is left.
			if s.Suffrage == raft.Voter && voters-1 < 3 {
				continue
			}
			n.log.Warn("removing failed member (dead server cleanup)", "member", m.Name, "failed_for", time.Since(failedSince[m.Name]).Round(time.Second))
			if err := n.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
				return err
			}
			n.gossip.Forget(m.Name)
			delete(failedSince, m.Name)
		}
	}
	return nil
}

// authenticated reports whether a member seen in gossip proves, over the
// peer port, that it is one: the call runs over the peer port's TLS (the
// cluster key's or the operator's certificates), so only a member's
// certificate completes it, and the member must answer with the ID of
// the name it gossips. Gossip alone never makes a member of raft. A
// refusal is logged at most once a minute per name.
func (n *Node) authenticated(m cluster.Member, refused map[string]time.Time) bool {
	err := n.verifyMember(m)
	if err == nil {
		delete(refused, m.Name)
		return true
	}
	if time.Since(refused[m.Name]) > time.Minute {
		refused[m.Name] = time.Now()
		n.log.Warn("not adding a member seen in gossip: it did not authenticate on the peer port", "member", m.Name, "addr", m.Meta.RaftAddr, "err", err)
	}
	return false
}

func (n *Node) verifyMember(m cluster.Member) error {
	st, err := n.memberStatus(m)
	if err != nil {
		return err
	}
	// Members of v0.1.0 do not say who they are (0).
	if id := st.GetHeader().GetMemberId(); id != 0 && id != MemberID(m.Name) {
		return fmt.Errorf("it answers as member %x, not %x", id, MemberID(m.Name))
	}
	return nil
}

// memberStatus asks a member gossip knows of for its status over the peer
// port.
func (n *Node) memberStatus(m cluster.Member) (*pb.StatusResponse, error) {
	c, err := n.peer.client(m.Meta.RaftAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Status(ctx)
}

// voterLimit is how many voters the leader promotes members up to.
func (c Config) voterLimit() int {
	switch {
	case c.MaxVoters > 0:
		return c.MaxVoters
	case c.BootstrapExpect > 0:
		return c.BootstrapExpect
	case c.Gossip != nil && len(c.Gossip.Join) > 0:
		return 3
	}
	return 1
}

// caughtUp asks a non-voter how far it has applied.
func (n *Node) caughtUp(m cluster.Member) bool {
	st, err := n.memberStatus(m)
	return err == nil && st.RaftAppliedIndex+catchUpEntries >= n.store.AppliedIndex()
}

// removeMember removes the member with the given ID (leader side).
func (n *Node) removeMember(ctx context.Context, id uint64) error {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	if err := n.lead.waitLeading(ctx); err != nil {
		return err
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return ErrStopped
	}
	for _, s := range f.Configuration().Servers {
		if MemberID(string(s.ID)) != id {
			continue
		}
		n.evict(string(s.ID))
		timeout := time.Until(deadlineOf(ctx))
		if err := n.raft.RemoveServer(s.ID, 0, timeout).Error(); err != nil {
			if errors.Is(err, raft.ErrNotLeader) {
				return ErrNotLeader
			}
			return ErrTimeout
		}
		n.log.Info("removed member", "member", s.ID)
		if n.gossip != nil {
			n.gossip.Forget(string(s.ID))
		}
		return nil
	}
	return ErrMemberNotFound
}

// evict remembers, on this leader, that a member was removed by an
// operator, so that its gossip does not get it added again.
func (n *Node) evict(name string) {
	n.evictedMu.Lock()
	defer n.evictedMu.Unlock()
	if n.evicted == nil {
		n.evicted = map[string]time.Time{}
	}
	n.evicted[name] = time.Now()
}

func (n *Node) isEvicted(name string) bool {
	n.evictedMu.Lock()
	defer n.evictedMu.Unlock()
	_, ok := n.evicted[name]
	return ok
}

// Leave hands over leadership if this member leads, has the leader remove
// it from the cluster, and tells the others in gossip that it left. The
// member should be closed afterwards.
func (n *Node) Leave(timeout time.Duration) error {
	if n.raft.State() == raft.Leader {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leadership transfer before leaving failed", "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := n.MemberRemove(ctx, n.memberID)
	if err != nil {
		err = fmt.Errorf("node: leave: %w", err)
	}
	if n.gossip != nil {
		err = errors.Join(err, n.gossip.Leave(timeout))
	}
	return err
}

// gossipMember returns what gossip knows of a member.
func (n *Node) gossipMember(name string) (cluster.Member, bool) {
	if n.gossip == nil {
		return cluster.Member{}, false
	}
	for _, m := range n.gossip.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// gossipAlive counts the members gossip sees alive, this one included.
func (n *Node) gossipAlive() int {
	alive := 0
	for _, m := range n.gossip.Members() {
		if m.State == cluster.StateAlive {
			alive++
		}
	}
	return alive
}
