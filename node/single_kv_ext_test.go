package node_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

func TestSingleMemberKV(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t)
	ctx := testCtx(t)

	put, err := c.Put(ctx, "/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision
	if _, err := c.Put(ctx, "/a", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/b", "3"); err != nil {
		t.Fatal(err)
	}

	t.Run("linearizable and serializable range", func(t *testing.T) { testSingleRange(t, ctx, c, rev) })
	t.Run("txn", func(t *testing.T) { testSingleTxn(t, ctx, c, rev) })
	t.Run("delete", func(t *testing.T) { testSingleDelete(t, ctx, c) })
	t.Run("compaction", func(t *testing.T) { testSingleCompaction(t, ctx, c, rev) })
	t.Run("status", func(t *testing.T) { testSingleStatus(t, ctx, s, c) })
	t.Run("health and metrics", func(t *testing.T) { testSingleHealthAndMetrics(t, ctx, s, c, rev) })
	t.Run("gateway range", func(t *testing.T) { testSingleGatewayRange(t, s) })
}

// testSingleRange reads /a=2 and /b=3, written after /a=1 at rev, both
// ways, and /a at rev.
func testSingleRange(t *testing.T, ctx context.Context, c *clientv3.Client, rev int64) {
	for _, opts := range [][]clientv3.OpOption{{clientv3.WithPrefix()}, {clientv3.WithPrefix(), clientv3.WithSerializable()}} {
		g, err := c.Get(ctx, "/", opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(g.Kvs) != 2 || string(g.Kvs[0].Value) != "2" || g.Kvs[0].Version != 2 || string(g.Kvs[1].Value) != "3" {
			t.Fatalf("range = %v", g.Kvs)
		}
		if g.Header.Revision != rev+2 {
			t.Fatalf("header revision %d, want %d", g.Header.Revision, rev+2)
		}
	}
	old, err := c.Get(ctx, "/a", clientv3.WithRev(rev))
	if err != nil || len(old.Kvs) != 1 || string(old.Kvs[0].Value) != "1" {
		t.Fatalf("get /a at rev %d = %v, %v", rev, old, err)
	}
}

// testSingleTxn runs a succeeding and a failing txn.
func testSingleTxn(t *testing.T, ctx context.Context, c *clientv3.Client, rev int64) {
	tr, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("/a"), "=", "2")).
		Then(clientv3.OpPut("/c", "4"), clientv3.OpGet("/b")).
		Else(clientv3.OpPut("/c", "never")).
		Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Succeeded || string(tr.Responses[1].GetResponseRange().Kvs[0].Value) != "3" {
		t.Fatalf("txn = %+v", tr)
	}
	tr, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Version("/a"), "=", 7)).Else(clientv3.OpGet("/c")).Commit()
	if err != nil || tr.Succeeded || string(tr.Responses[0].GetResponseRange().Kvs[0].Value) != "4" {
		t.Fatalf("failing txn = %+v, %v", tr, err)
	}
	// A read-only txn does not bump the revision.
	if tr.Header.Revision != rev+3 {
		t.Fatalf("revision after read-only txn %d, want %d", tr.Header.Revision, rev+3)
	}
}

// testSingleDelete deletes /c, which testSingleTxn wrote.
func testSingleDelete(t *testing.T, ctx context.Context, c *clientv3.Client) {
	d, err := c.Delete(ctx, "/c", clientv3.WithPrevKV())
	if err != nil || d.Deleted != 1 || string(d.PrevKvs[0].Value) != "4" {
		t.Fatalf("delete = %+v, %v", d, err)
	}
	g, err := c.Get(ctx, "/c")
	if err != nil || len(g.Kvs) != 0 {
		t.Fatalf("get after delete = %v, %v", g, err)
	}
}

// testSingleCompaction compacts to rev+1 and checks reads and compactions
// around it.
func testSingleCompaction(t *testing.T, ctx context.Context, c *clientv3.Client, rev int64) {
	if _, err := c.Compact(ctx, rev+1, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "/a", clientv3.WithRev(rev)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get below compaction: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := c.Compact(ctx, rev); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("compact again below: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := c.Compact(ctx, 1<<40); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("compact future: %v, want %v", err, rpctypes.ErrFutureRev)
	}
	g, err := c.Get(ctx, "/a", clientv3.WithRev(rev+1))
	if err != nil || string(g.Kvs[0].Value) != "2" {
		t.Fatalf("get at compact revision = %v, %v", g, err)
	}
}

// testSingleStatus checks the status, member list and raft stats of the
// only member.
func testSingleStatus(t *testing.T, ctx context.Context, s *testserver.Server, c *clientv3.Client) {
	st, err := c.Status(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	n := s.Node
	if st.Leader != n.MemberID() || st.Header.MemberId != node.MemberID("m1") || st.RaftTerm == 0 ||
		st.RaftIndex < st.RaftAppliedIndex || st.RaftAppliedIndex == 0 || st.DbSize <= 0 || len(st.Errors) != 0 {
		t.Fatalf("status = %+v", st)
	}
	if st.Header.ClusterId != n.ClusterID() || n.ClusterID() == 0 {
		t.Fatalf("cluster id %d, node says %d", st.Header.ClusterId, n.ClusterID())
	}
	if !n.IsLeader() || n.Healthy() != nil || n.SinkHealthy() != nil || n.Term() != st.RaftTerm {
		t.Fatalf("leader %v healthy %v sink %v term %d", n.IsLeader(), n.Healthy(), n.SinkHealthy(), n.Term())
	}
	ms, err := n.Members(ctx)
	if err != nil || len(ms) != 1 || ms[0].Name != "m1" || ms[0].ClientURLs[0] != s.URL || ms[0].IsLearner {
		t.Fatalf("members = %v, %v", ms, err)
	}
	if n.RaftStats()["state"] != "Leader" {
		t.Fatalf("raft stats = %v", n.RaftStats())
	}
}

// testSingleHealthAndMetrics checks /health and /metrics.
func testSingleHealthAndMetrics(t *testing.T, ctx context.Context, s *testserver.Server, c *clientv3.Client, rev int64) {
	code, body := httpGet(t, s.URL+"/health")
	var h map[string]string
	if err := json.Unmarshal([]byte(body), &h); err != nil || code != http.StatusOK || h["health"] != "true" {
		t.Fatalf("/health = %d %s (%v)", code, body, err)
	}
	code, body = httpGet(t, s.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	cur, err := c.Get(ctx, "/a", clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"etcd_server_has_leader":         1,
		"etcd_server_is_leader":          1,
		"etcdsql_applied_revision":       float64(cur.Header.Revision),
		"etcdsql_compact_revision":       float64(rev + 1),
		"etcd_debugging_mvcc_keys_total": 2,
		"etcdsql_cluster_voters":         1,
		"etcdsql_cluster_nonvoters":      0,
		"etcdsql_cluster_failed_members": 0,
	} {
		if got := metric(t, body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"etcdsql_raft_applied_index", "etcd_server_proposals_committed_total", "etcdsql_raft_term", "etcd_mvcc_db_total_size_in_bytes"} {
		if metric(t, body, name) <= 0 {
			t.Errorf("%s not positive", name)
		}
	}
}

// testSingleGatewayRange reads /b through the JSON gateway.
func testSingleGatewayRange(t *testing.T, s *testserver.Server) {
	key := base64.StdEncoding.EncodeToString([]byte("/b"))
	resp, err := http.Post(s.URL+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"`+key+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Kvs []struct{ Value string } `json:"kvs"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Kvs) != 1 || r.Kvs[0].Value != base64.StdEncoding.EncodeToString([]byte("3")) {
		t.Fatalf("gateway range = %+v, %v", r, err)
	}
}
