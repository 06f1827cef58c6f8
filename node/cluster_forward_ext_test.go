package node_test

import (
	"context"
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

	t.Run("put, txn, delete and compact forwarded", func(t *testing.T) { testForwardedWrites(t, ctx, fc, gc, lc) })
	t.Run("leases forwarded", func(t *testing.T) { testForwardedLeases(t, ctx, fc, gc) })
	t.Run("auth forwarded", func(t *testing.T) { testForwardedAuth(t, ctx, fc, gc, lc) })
	t.Run("read index", func(t *testing.T) { testReadIndex(t, ctx, lc, fc, gc) })
	t.Run("member list", func(t *testing.T) { testMemberList(t, ctx, c, fc, lc) })
	t.Run("status and metrics on a follower", func(t *testing.T) { testFollowerStatus(t, ctx, c) })
	t.Run("leader crash", func(t *testing.T) { testLeaderCrash(t, ctx, c) })
}

// testForwardedWrites sends a put, a txn, a delete and a compaction to the
// follower fc and checks the results on the leader lc and the other
// follower gc.
func testForwardedWrites(t *testing.T, ctx context.Context, fc, gc, lc *clientv3.Client) {
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
}

// testForwardedLeases grants, keeps alive and revokes a lease through the
// follower fc and checks it on the other follower gc.
func testForwardedLeases(t *testing.T, ctx context.Context, fc, gc *clientv3.Client) {
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
}

// testReadIndex reads each write linearizably on a member that did not
// take it.
func testReadIndex(t *testing.T, ctx context.Context, lc, fc, gc *clientv3.Client) {
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
}

// testMemberList checks the member list as the follower fc and the leader
// lc give it.
func testMemberList(t *testing.T, ctx context.Context, c *testcluster.Cluster, fc, lc *clientv3.Client) {
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
}

// testFollowerStatus checks every member's status and a follower's
// /metrics and /health.
func testFollowerStatus(t *testing.T, ctx context.Context, c *testcluster.Cluster) {
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
}
