package node_test

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

// others returns the indexes of the running members other than i.
func others(c *testcluster.Cluster, i int) []int {
	var out []int
	for j := range c.Members {
		if j != i && c.Running(j) != nil {
			out = append(out, j)
		}
	}
	return out
}

// memberNames lists the names in a member list, sorted.
func memberNames(ms []*etcdserverpb.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	slices.Sort(out)
	return out
}

// TestClusterFollower shares one 3-member cluster: every write kind sent
// to a follower is forwarded to the leader, and reads on any member see
// writes made on any other.
func TestClusterFollower(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.Leader(10 * time.Second)
	rest := others(c, leader)
	f, g := rest[0], rest[1]
	fc, gc, lc := c.Client(f), c.Client(g), c.Client(leader)
	ctx := testCtx(t)

	if c.Running(f).Node.IsLeader() || !c.Running(leader).Node.IsLeader() {
		t.Fatalf("member %d should follow and %d lead", f, leader)
	}

	t.Run("put, txn, delete and compact forwarded", func(t *testing.T) {
		p1, err := fc.Put(ctx, "/f/a", "1")
		if err != nil {
			t.Fatal(err)
		}
		// The follower answers once it applied the write itself, so
		// even a serializable read on it sees it.
		if r, err := fc.Get(ctx, "/f/a", clientv3.WithSerializable()); err != nil || len(r.Kvs) != 1 || r.Kvs[0].ModRevision != p1.Header.Revision {
			t.Fatalf("serializable read of own write on follower = %v, %v", r, err)
		}
		tr, err := fc.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("/f/a"), "=", p1.Header.Revision)).
			Then(clientv3.OpPut("/f/b", "2"), clientv3.OpPut("/f/a", "1b")).Commit()
		if err != nil || !tr.Succeeded || tr.Header.Revision != p1.Header.Revision+1 {
			t.Fatalf("txn via follower = %+v, %v", tr, err)
		}
		d, err := fc.Delete(ctx, "/f/b")
		if err != nil || d.Deleted != 1 {
			t.Fatalf("delete via follower = %+v, %v", d, err)
		}
		// Every member sees the result, linearizably.
		for _, cl := range []*clientv3.Client{lc, gc} {
			r, err := cl.Get(ctx, "/f/", clientv3.WithPrefix())
			if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "1b" || r.Header.Revision != d.Header.Revision {
				t.Fatalf("range elsewhere = %v, %v (want /f/a=1b at rev %d)", r, err, d.Header.Revision)
			}
		}
		if _, err := fc.Compact(ctx, tr.Header.Revision); err != nil {
			t.Fatalf("compact via follower: %v", err)
		}
		eventually(t, 5*time.Second, "compaction reaches the other follower", func() error {
			_, err := gc.Get(ctx, "/f/a", clientv3.WithRev(p1.Header.Revision), clientv3.WithSerializable())
			if !errors.Is(err, rpctypes.ErrCompacted) {
				return fmt.Errorf("read below compaction: %v", err)
			}
			return nil
		})
		if _, err := fc.Compact(ctx, p1.Header.Revision); !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("compact below via follower: %v, want %v", err, rpctypes.ErrCompacted)
		}
	})

	t.Run("leases forwarded", func(t *testing.T) {
		gr, err := fc.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fc.Put(ctx, "/f/leased", "v", clientv3.WithLease(gr.ID)); err != nil {
			t.Fatal(err)
		}
		ka, err := fc.KeepAliveOnce(ctx, gr.ID)
		if err != nil || ka.TTL != 30 {
			t.Fatalf("keepalive via follower = %+v, %v", ka, err)
		}
		ttl, err := fc.TimeToLive(ctx, gr.ID, clientv3.WithAttachedKeys())
		if err != nil || ttl.GrantedTTL != 30 || ttl.TTL <= 0 || len(ttl.Keys) != 1 {
			t.Fatalf("timetolive via follower = %+v, %v", ttl, err)
		}
		ls, err := gc.Leases(ctx)
		if err != nil || !slices.ContainsFunc(ls.Leases, func(l clientv3.LeaseStatus) bool { return l.ID == gr.ID }) {
			t.Fatalf("leases on the other follower = %+v, %v", ls, err)
		}
		if _, err := fc.Revoke(ctx, gr.ID); err != nil {
			t.Fatalf("revoke via follower: %v", err)
		}
		r, err := gc.Get(ctx, "/f/leased")
		if err != nil || len(r.Kvs) != 0 {
			t.Fatalf("key of revoked lease on the other follower = %v, %v", r, err)
		}
		if _, err := fc.TimeToLive(ctx, gr.ID); err != nil {
			t.Fatalf("timetolive of revoked via follower: %v", err)
		}
		if _, err := fc.KeepAliveOnce(ctx, gr.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			t.Fatalf("keepalive of revoked via follower: %v, want %v", err, rpctypes.ErrLeaseNotFound)
		}
	})

	t.Run("read index", func(t *testing.T) {
		// Writes alternate between members; each is read linearizably
		// right away on a member that did not take it.
		clients := []*clientv3.Client{lc, fc, gc}
		for i := 0; i < 9; i++ {
			w, r := clients[i%3], clients[(i+1)%3]
			val := fmt.Sprint(i)
			p, err := w.Put(ctx, "/ri", val)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Get(ctx, "/ri")
			if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != val || got.Header.Revision < p.Header.Revision {
				t.Fatalf("linearizable read after write %d = %v, %v", i, got, err)
			}
		}
	})

	t.Run("member list", func(t *testing.T) {
		for _, cl := range []*clientv3.Client{fc, lc} {
			ml, err := cl.MemberList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := memberNames(ml.Members); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
				t.Fatalf("members %v", got)
			}
			for _, m := range ml.Members {
				i := slices.IndexFunc(c.Members, func(s *testcluster.Member) bool { return s.Name == m.Name })
				if m.ID != node.MemberID(m.Name) || m.IsLearner || !slices.Equal(m.ClientURLs, []string{c.Members[i].URL}) ||
					!slices.Equal(m.PeerURLs, []string{"http://" + c.Members[i].PeerAddr}) {
					t.Fatalf("member %+v, want client URL %s", m, c.Members[i].URL)
				}
			}
		}
	})

	t.Run("status and metrics on a follower", func(t *testing.T) {
		// Under load leadership may have moved since the start.
		leader := c.Leader(10 * time.Second)
		f := others(c, leader)[0]
		lid := c.Running(leader).Node.MemberID()
		for _, i := range []int{0, 1, 2} {
			n := c.Running(i).Node
			st, err := n.Status(ctx)
			if err != nil || st.Leader != lid || st.Header.MemberId != node.MemberID(c.Members[i].Name) || len(st.Errors) != 0 {
				t.Fatalf("status of %d = %+v, %v", i, st, err)
			}
			if n.ClusterID() != c.Running(leader).Node.ClusterID() || n.Healthy() != nil || n.SinkHealthy() != nil {
				t.Fatalf("member %d: cluster id %d, healthy %v, sink %v", i, n.ClusterID(), n.Healthy(), n.SinkHealthy())
			}
		}
		code, body := httpGet(t, c.Members[f].URL+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics = %d", code)
		}
		for name, want := range map[string]float64{"etcd_server_has_leader": 1, "etcd_server_is_leader": 0, "etcdsql_cluster_voters": 3} {
			if got := metric(t, body, name); got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		if code, body := httpGet(t, c.Members[f].URL+"/health"); code != http.StatusOK {
			t.Fatalf("/health on follower = %d %s", code, body)
		}
	})

	t.Run("leader crash", func(t *testing.T) {
		old := c.Leader(10 * time.Second)
		rest := others(c, old)
		fc, gc := c.Client(rest[0]), c.Client(rest[1])
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
		r, err = c.Client(add).Get(ctx, "/crash")
		if err != nil || string(r.Kvs[0].Value) != "two voters" {
			t.Fatalf("read on the new member = %v, %v", r, err)
		}
	})
}

// TestClusterSnapshotCatchUp has a follower that was down while the log
// was compacted into a snapshot catch up from that snapshot.
func TestClusterSnapshotCatchUp(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(_ int, mc *node.MemberConfig) {
		mc.Node.SnapshotThreshold = 16
		mc.Node.TrailingLogs = 4
		mc.Node.SnapshotInterval = 50 * time.Millisecond
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
	if st := c.Running(down).Node.RaftStats(); st["last_snapshot_index"] == "0" {
		t.Fatalf("restarted follower did not install a snapshot: %v", st)
	}
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
