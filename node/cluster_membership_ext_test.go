package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

// testLeaderCrash crashes the leader, has the remaining members fail over,
// removes the crashed member and has a new member take its place.
func testLeaderCrash(t *testing.T, ctx context.Context, c *testcluster.Cluster) {
	old := c.Leader(10 * time.Second)
	rest := others(c, old)
	fc, gc := c.Client(rest[0]), c.Client(rest[1])
	nl, oldID := crashLeaderAndWrite(t, ctx, c, old, fc, gc)
	removeCrashedMember(t, ctx, c, old, oldID, nl, fc, gc)
	replaceRemovedVoter(t, ctx, c, gc)
}

// crashLeaderAndWrite crashes the leader old and checks that writes go on
// under the new leader, which it returns with the crashed member's ID.
func crashLeaderAndWrite(t *testing.T, ctx context.Context, c *testcluster.Cluster, old int, fc, gc *clientv3.Client) (int, uint64) {
	before, err := fc.Put(ctx, "/crash", "before")
	if err != nil {
		t.Fatal(err)
	}
	oldID := c.Running(old).Node.MemberID()
	c.Crash(old)
	nl := c.Leader(15 * time.Second)
	if nl == old {
		t.Fatalf("leader %d still leads after crashing", nl)
	}
	p, err := gc.Put(ctx, "/crash", "after")
	if err != nil {
		t.Fatalf("write after leader crash: %v", err)
	}
	if p.Header.Revision != before.Header.Revision+1 {
		t.Fatalf("revision after failover %d, want %d", p.Header.Revision, before.Header.Revision+1)
	}
	r, err := fc.Get(ctx, "/crash")
	if err != nil || string(r.Kvs[0].Value) != "after" {
		t.Fatalf("read after failover = %v, %v", r, err)
	}
	return nl, oldID
}

// removeCrashedMember removes the crashed member old, with the ID oldID,
// through a follower of the leader nl.
func removeCrashedMember(t *testing.T, ctx context.Context, c *testcluster.Cluster, old int, oldID uint64, nl int, fc, gc *clientv3.Client) {
	// The crashed member stays listed, without a client URL once
	// gossip sees it failed, until an operator removes it.
	eventually(t, 15*time.Second, "crashed member listed without client URLs", func() error {
		ms, err := c.Running(nl).Node.Members(ctx)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.ID == oldID && len(m.ClientURLs) == 0 {
				return nil
			}
		}
		return fmt.Errorf("members %v", ms)
	})
	// From a follower, so that the removal is forwarded.
	if err := c.Running(others(c, nl)[0]).Node.MemberRemove(ctx, oldID); err != nil {
		t.Fatalf("remove crashed member: %v", err)
	}
	// The leader answered once the change committed; the others
	// apply it soon after.
	leaderMembers, err := c.Running(nl).Node.Members(ctx)
	if err != nil || len(leaderMembers) != 2 || slices.Contains(memberNames(leaderMembers), c.Members[old].Name) {
		t.Fatalf("members on the leader after removal = %v, %v", leaderMembers, err)
	}
	eventually(t, 5*time.Second, "removal reaches every member", func() error {
		for _, cl := range []*clientv3.Client{fc, gc} {
			ml, err := cl.MemberList(ctx)
			if err != nil {
				return err
			}
			if len(ml.Members) != 2 || slices.Contains(memberNames(ml.Members), c.Members[old].Name) {
				return fmt.Errorf("members %v", memberNames(ml.Members))
			}
		}
		return nil
	})
	if err := c.Running(nl).Node.MemberRemove(ctx, oldID); !errors.Is(err, node.ErrMemberNotFound) {
		t.Fatalf("remove again: %v, want %v", err, node.ErrMemberNotFound)
	}
	if _, err := fc.Put(ctx, "/crash", "two voters"); err != nil {
		t.Fatalf("write with two voters: %v", err)
	}
}

// replaceRemovedVoter adds a member to a cluster left with two voters.
func replaceRemovedVoter(t *testing.T, ctx context.Context, c *testcluster.Cluster, gc *clientv3.Client) {
	// A new member joins as a non-voter, catches up, and is
	// promoted to take the removed voter's place.
	add := c.Add(false)
	testserver.WaitReady(t, c.Members[add].URL, 20*time.Second)
	eventually(t, 20*time.Second, "new member promoted to voter", func() error {
		ml, err := gc.MemberList(ctx)
		if err != nil {
			return err
		}
		for _, m := range ml.Members {
			if m.Name == c.Members[add].Name && !m.IsLearner {
				return nil
			}
		}
		return fmt.Errorf("members %v", ml.Members)
	})
	r, err := c.Client(add).Get(ctx, "/crash")
	if err != nil || string(r.Kvs[0].Value) != "two voters" {
		t.Fatalf("read on the new member = %v, %v", r, err)
	}
}

// TestClusterSnapshotCatchUp has a follower that was down while the log
// was compacted into a snapshot catch up from that snapshot.
func TestClusterSnapshotCatchUp(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, mc *node.MemberConfig) {
		mc.Node.SnapshotThreshold = 16
		mc.Node.TrailingLogs = 4
		mc.Node.SnapshotInterval = 50 * time.Millisecond
		// Small segments, so that the wal store drops the entries the
		// snapshot covers instead of serving them from its open segment.
		mc.Node.WALSegmentBytes = 2048
	}})
	ctx := testCtx(t)
	leader := c.Leader(10 * time.Second)
	down := others(c, leader)[0]
	c.Crash(down)

	lc := c.Client(leader)
	var last int64
	for i := 0; i < 60; i++ {
		p, err := lc.Put(ctx, fmt.Sprintf("/snap/%02d", i), fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = p.Header.Revision
	}
	eventually(t, 10*time.Second, "leader takes a snapshot", func() error {
		if st := c.Running(leader).Node.RaftStats(); st["last_snapshot_index"] == "0" {
			return fmt.Errorf("raft stats %v", st)
		}
		return nil
	})

	c.Restart(down)
	testserver.WaitReady(t, c.Members[down].URL, 20*time.Second)
	dc := c.Client(down)
	r, err := dc.Get(ctx, "/snap/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || r.Count != 60 || r.Header.Revision < last {
		t.Fatalf("restarted follower = %v, %v (want 60 keys at revision %d)", r, err, last)
	}
	// Raft records the snapshot as its own only after the store has
	// restored it, so the read above can see the keys a moment earlier.
	eventually(t, 5*time.Second, "restarted follower installs a snapshot", func() error {
		if st := c.Running(down).Node.RaftStats(); st["last_snapshot_index"] == "0" {
			return fmt.Errorf("raft stats %v", st)
		}
		return nil
	})
	if _, err := dc.Put(ctx, "/snap/after", "x"); err != nil {
		t.Fatalf("write via restarted follower: %v", err)
	}
}

// TestClusterNonvoterAndLeave adds a non-voter, then has the leader leave
// gracefully.
func TestClusterNonvoterAndLeave(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx := testCtx(t)
	leader := c.Leader(10 * time.Second)

	nv, nvc := addNonvoter(t, ctx, c, leader)
	leaderLeaves(t, ctx, c, leader, nv, nvc)
}

// addNonvoter adds a non-voter and checks that it takes writes and serves
// linearizable reads without leading. It returns the non-voter's index
// and a client of it.
func addNonvoter(t *testing.T, ctx context.Context, c *testcluster.Cluster, leader int) (int, *clientv3.Client) {
	nv := c.Add(true)
	testserver.WaitReady(t, c.Members[nv].URL, 20*time.Second)
	nvc := c.Client(nv)
	eventually(t, 10*time.Second, "non-voter in the member list", func() error {
		ml, err := nvc.MemberList(ctx)
		if err != nil {
			return err
		}
		for _, m := range ml.Members {
			if m.Name == c.Members[nv].Name {
				if !m.IsLearner || !slices.Equal(m.ClientURLs, []string{c.Members[nv].URL}) {
					return fmt.Errorf("non-voter listed as %+v", m)
				}
				return nil
			}
		}
		return fmt.Errorf("members %v", memberNames(ml.Members))
	})
	if _, err := nvc.Put(ctx, "/nv", "via non-voter"); err != nil {
		t.Fatalf("write via non-voter: %v", err)
	}
	r, err := c.Client(leader).Get(ctx, "/nv")
	if err != nil || string(r.Kvs[0].Value) != "via non-voter" {
		t.Fatalf("read on leader = %v, %v", r, err)
	}
	if _, err := c.Client(leader).Put(ctx, "/nv", "via leader"); err != nil {
		t.Fatal(err)
	}
	if r, err := nvc.Get(ctx, "/nv"); err != nil || string(r.Kvs[0].Value) != "via leader" {
		t.Fatalf("linearizable read on non-voter = %v, %v", r, err)
	}
	if c.Running(nv).Node.IsLeader() {
		t.Fatal("non-voter leads")
	}
	_, body := httpGet(t, c.Members[leader].URL+"/metrics")
	if got := metric(t, body, "etcdsql_cluster_nonvoters"); got != 1 {
		t.Fatalf("etcdsql_cluster_nonvoters = %v, want 1", got)
	}
	return nv, nvc
}

// leaderLeaves has the leader leave gracefully and checks that the others,
// the non-voter nv among them, go on without it.
func leaderLeaves(t *testing.T, ctx context.Context, c *testcluster.Cluster, leader, nv int, nvc *clientv3.Client) {
	// The leader leaves: it hands leadership over and is removed.
	leaving := c.Running(leader)
	name := c.Members[leader].Name
	if err := leaving.Node.Leave(10 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.Stop(leader)
	nl := c.Leader(15 * time.Second)
	if nl == leader || nl == nv {
		t.Fatalf("new leader %d", nl)
	}
	remaining := map[int]*clientv3.Client{}
	for _, i := range others(c, -1) {
		remaining[i] = c.Client(i)
	}
	eventually(t, 5*time.Second, "every member sees "+name+" gone", func() error {
		for i, cl := range remaining {
			ml, err := cl.MemberList(ctx)
			if err != nil {
				return err
			}
			if got := memberNames(ml.Members); len(got) != 3 || slices.Contains(got, name) {
				return fmt.Errorf("members on %d: %v", i, got)
			}
		}
		return nil
	})
	if _, err := nvc.Put(ctx, "/nv", "after leave"); err != nil {
		t.Fatalf("write after leave: %v", err)
	}
	for i, cl := range remaining {
		if r, err := cl.Get(ctx, "/nv"); err != nil || string(r.Kvs[0].Value) != "after leave" {
			t.Fatalf("member %d reads %v, %v", i, r, err)
		}
	}
}
