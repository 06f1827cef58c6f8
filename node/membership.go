package node

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/internal/release"
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
		n.noteClusterVersion()
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

// stepKind is one change the leader makes to reconcile raft with gossip.
type stepKind int

const (
	stepAdd          stepKind = iota // a new member: add it as a non-voter, once it authenticated
	stepMove                         // a member's peer address changed: re-add it there, once it authenticated
	stepPromote                      // a non-voter asking to vote: promote it, once it caught up
	stepRemoveLeft                   // it left gracefully: remove it and forget it
	stepForget                       // it left and is not in raft: forget it in gossip
	stepReportFailed                 // it has just been seen failed: say so
	stepRemoveFailed                 // failed for DeadServerCleanup: remove it and forget it
)

// step is one planned change; server is the member's entry in raft's
// configuration, if any.
type step struct {
	kind   stepKind
	member cluster.Member
	server raft.Server
}

// reconcileInput is everything the reconcile plan depends on.
type reconcileInput struct {
	self        string
	clusterID   uint64
	servers     []raft.Server    // raft's configuration
	members     []cluster.Member // what gossip sees
	evicted     func(name string) bool
	failedSince map[string]time.Time // first seen failed; updated by the plan
	now         time.Time
	voterLimit  int
	deadCleanup time.Duration // 0: failed members are only reported
}

// planReconcile decides, from raft's configuration and gossip, what the
// leader changes: a pure function of its input (but for failedSince,
// which it keeps current). The checks that need the network (is a new
// member authentic, has a non-voter caught up) are the executor's.
func planReconcile(in reconcileInput) []step {
	conf := map[raft.ServerID]raft.Server{}
	voters := 0
	for _, s := range in.servers {
		conf[s.ID] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	myID := strconv.FormatUint(in.clusterID, 16)
	var plan []step
	for _, m := range in.members {
		s, inConf := conf[raft.ServerID(m.Name)]
		if m.Name == in.self {
			continue
		}
		if m.State != cluster.StateFailed {
			delete(in.failedSince, m.Name)
		}
		add := func(k stepKind) { plan = append(plan, step{kind: k, member: m, server: s}) }
		switch m.State {
		case cluster.StateAlive:
			switch {
			case (m.Meta.ClusterID != "" && m.Meta.ClusterID != myID) || m.Meta.RaftAddr == "" || m.Meta.Leaving || in.evicted(m.Name):
			case !inConf:
				add(stepAdd)
			case s.Address != raft.ServerAddress(m.Meta.RaftAddr):
				add(stepMove)
			case s.Suffrage == raft.Nonvoter && m.Meta.Role == cluster.RoleVoter && voters < in.voterLimit:
				add(stepPromote)
				voters++
			}
		case cluster.StateLeft:
			if inConf {
				add(stepRemoveLeft)
			} else {
				add(stepForget)
			}
		case cluster.StateFailed:
			since, seen := in.failedSince[m.Name]
			if !seen {
				since = in.now
				in.failedSince[m.Name] = since
				if inConf {
					add(stepReportFailed)
				}
			}
			// Only while the others still form a majority of what is left.
			if !inConf || in.deadCleanup <= 0 || in.now.Sub(since) < in.deadCleanup || (s.Suffrage == raft.Voter && voters-1 < 3) {
				continue
			}
			add(stepRemoveFailed)
			if s.Suffrage == raft.Voter {
				voters--
			}
		}
	}
	return plan
}

// reconcileOnce plans and carries out one round.
func (n *Node) reconcileOnce(failedSince, refused map[string]time.Time) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	plan := planReconcile(reconcileInput{
		self: n.cfg.Name, clusterID: n.ClusterID(), servers: f.Configuration().Servers, members: n.gossip.Members(),
		evicted: n.isEvicted, failedSince: failedSince, now: time.Now(),
		voterLimit: n.cfg.voterLimit(), deadCleanup: n.cfg.DeadServerCleanup,
	})
	for _, st := range plan {
		if err := n.carryOut(st, failedSince, refused); err != nil {
			return err
		}
	}
	return nil
}

// carryOut makes one planned change, after the checks that need the
// network.
func (n *Node) carryOut(st step, failedSince, refused map[string]time.Time) error {
	const timeout = 10 * time.Second
	m := st.member
	id, addr := raft.ServerID(m.Name), raft.ServerAddress(m.Meta.RaftAddr)
	switch st.kind {
	case stepAdd, stepMove:
		if !n.authenticated(m, refused) {
			return nil
		}
		n.versions.mu.Lock()
		defer n.versions.mu.Unlock()
		if need, ok := n.admitRelease(release.Of(m.Meta.Version)); !ok {
			if key := "release/" + m.Name; time.Since(refused[key]) > time.Minute {
				refused[key] = time.Now()
				n.log.Warn("not adding a member: it runs a release older than the cluster's data needs", "member", m.Name, "release", release.Of(m.Meta.Version), "needs", need)
			}
			return nil
		}
		add := n.raft.AddNonvoter
		if st.kind == stepMove && st.server.Suffrage == raft.Voter {
			add = n.raft.AddVoter
		}
		n.log.Info("adding member", "member", m.Name, "addr", addr, "moved_from", st.server.Address, "voter", st.server.Suffrage == raft.Voter)
		return add(id, addr, 0, timeout).Error()
	case stepPromote:
		if !n.caughtUp(m) {
			return nil
		}
		n.log.Info("promoting caught-up member to voter", "member", m.Name)
		return n.raft.AddVoter(id, addr, 0, timeout).Error()
	case stepRemoveLeft:
		n.log.Info("removing member that left", "member", m.Name)
		if err := n.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
			return err
		}
		n.gossip.Forget(m.Name)
	case stepForget:
		n.gossip.Forget(m.Name)
	case stepReportFailed:
		n.log.Warn("member failed: it stays in the cluster until removed", "member", m.Name)
	case stepRemoveFailed:
		n.log.Warn("removing failed member (dead server cleanup)", "member", m.Name, "failed_for", time.Since(failedSince[m.Name]).Round(time.Second))
		if err := n.raft.RemoveServer(id, 0, timeout).Error(); err != nil {
			return err
		}
		n.gossip.Forget(m.Name)
		delete(failedSince, m.Name)
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
	c, err := n.peer.Client(m.Meta.RaftAddr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return c.Status(ctx)
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
