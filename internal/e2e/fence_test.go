package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// dbFence reads the fence (the meta row leader_term) of a database.
func dbFence(t *testing.T, dsn string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sqlsink.OpenReadOnly(sqlsink.Config{MySQLDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.LeaderTerm
}

// fullRange reads every key with its revisions; serializable reads only
// what the member itself holds.
func fullRange(t *testing.T, c *clientv3.Client, serializable bool) (int64, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts := []clientv3.OpOption{clientv3.WithFromKey()}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	r, err := c.Get(ctx, "\x00", opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision, kvsString(r.Kvs)
}

// TestRebuildAfterRestartsContinuesTheFence: a member restarted (each
// start raises its raft term, and with it the database's fence) and then
// rebuilt from the database with the same name starts a new raft; it must
// still lead and write, with a fence above the database's.
func TestRebuildAfterRestartsContinuesTheFence(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := mysqltest.NewDatabase(t)
	dir := t.TempDir()
	start := func() *testserver.Server {
		return testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(dir))
	}
	a := start()
	if _, err := a.Client(t).Put(ctx, "/fence/a", "1"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	a = start()
	if _, err := a.Client(t).Put(ctx, "/fence/b", "2"); err != nil {
		t.Fatal(err)
	}
	rev, before := fullRange(t, a.Client(t), false)
	a.Close()
	fence := dbFence(t, dsn)
	if fence < 3 {
		t.Fatalf("fence %d after two starts, want at least 3", fence)
	}

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	b := start()
	cb := b.Client(t)
	revB, after := fullRange(t, cb, false)
	if revB != rev {
		t.Errorf("revision %d after the rebuild, %d before", revB, rev)
	}
	diffLines(t, "key-values", before, after)
	r, err := cb.Put(ctx, "/fence/c", "3")
	if err != nil {
		t.Fatalf("put after the rebuild: %v", err)
	}
	if r.Header.Revision != rev+1 {
		t.Errorf("put after the rebuild at revision %d, want %d", r.Header.Revision, rev+1)
	}
	if got := dbFence(t, dsn); got <= fence {
		t.Errorf("fence %d after the rebuild, %d before: the rebuilt leader must write above it", got, fence)
	}
	checkDatabase(t, cb, sqlsink.Config{MySQLDSN: dsn})
}

// TestClusterRebuildAfterRestarts: a three-member cluster on MariaDB goes
// through restarts of members (the leader among them, so leadership
// moves), which raise the raft term and the database's fence. Then one
// member loses its data dir and starts again with the same name and
// address; then every member loses its data dir and the cluster is
// rebuilt from the database alone. Each time every key keeps its
// revisions and writes are accepted at once.
func TestClusterRebuildAfterRestarts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := mysqltest.NewDatabase(t)
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	cl := c.Client()
	put := func(cl *clientv3.Client, k, v string) int64 {
		t.Helper()
		r, err := cl.Put(ctx, k, v)
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		return r.Header.Revision
	}
	for i := 0; i < 20; i++ {
		put(cl, fmt.Sprintf("/routes/%02d", i), "v0")
	}
	startFence := dbFence(t, dsn)

	// Five restarts: the leader, a follower, the leader (crashed), a
	// follower, the leader; writes between them.
	for r := 0; r < 5; r++ {
		leader := c.Leader(20 * time.Second)
		i := leader
		if r%2 == 1 {
			i = (leader + 1) % len(c.Members)
		}
		if r == 2 {
			c.Crash(i)
		} else {
			c.Stop(i)
		}
		others := c.Client(otherMembers(c, i)...)
		for k := 0; k < 5; k++ {
			put(others, fmt.Sprintf("/routes/%02d", k+r*3), fmt.Sprintf("restart %d", r))
		}
		c.Restart(i)
		testserver.WaitReady(t, c.Members[i].URL, 20*time.Second)
	}
	// A client that outlived every member's restart may hold a broken
	// connection; users' clients reconnect and retry, so take a new one.
	cl = c.Client()
	rev, before := fullRange(t, cl, false)
	fence := dbFence(t, dsn)
	if fence <= startFence {
		t.Fatalf("fence %d after the restarts, %d before: no leader change raised it", fence, startFence)
	}
	t.Logf("after 5 restarts: revision %d, fence %d (was %d)", rev, fence, startFence)

	// One member, the leader, loses its data dir.
	lost := c.Leader(20 * time.Second)
	c.Crash(lost)
	if err := os.RemoveAll(c.Members[lost].DataDir); err != nil {
		t.Fatal(err)
	}
	c.Restart(lost)
	testserver.WaitReady(t, c.Members[lost].URL, 20*time.Second)
	cLost := c.Client(lost)
	revLost, afterLost := fullRange(t, cLost, true)
	if revLost != rev {
		t.Errorf("member with a lost data dir at revision %d, want %d", revLost, rev)
	}
	diffLines(t, "key-values on the member with a lost data dir", before, afterLost)
	if got := put(cLost, "/after/lost", "x"); got != rev+1 {
		t.Errorf("first put after the member's rebuild at revision %d, want %d", got, rev+1)
	}
	rev, before = fullRange(t, cl, false)

	// Every member loses its data dir: the cluster is rebuilt from the
	// database alone.
	fence = dbFence(t, dsn)
	all := otherMembers(c, -1)
	for _, i := range all {
		c.Crash(i)
	}
	for _, i := range all {
		if err := os.RemoveAll(c.Members[i].DataDir); err != nil {
			t.Fatal(err)
		}
	}
	c.RestartTogether(all...)
	cl = c.Client()
	for _, i := range all {
		ci := c.Client(i)
		revI, afterI := fullRange(t, ci, false)
		if revI != rev {
			t.Errorf("member %d after the cluster's rebuild at revision %d, want %d", i, revI, rev)
		}
		diffLines(t, fmt.Sprintf("key-values on member %d after the cluster's rebuild", i), before, afterI)
	}
	if got := put(cl, "/after/all", "x"); got != rev+1 {
		t.Errorf("first put after the cluster's rebuild at revision %d, want %d", got, rev+1)
	}
	if got := dbFence(t, dsn); got <= fence {
		t.Errorf("fence %d after the cluster's rebuild, %d before", got, fence)
	}
	checkDatabase(t, cl, sqlsink.Config{MySQLDSN: dsn})
}

// otherMembers lists every member but skip (-1: every member).
func otherMembers(c *testcluster.Cluster, skip int) []int {
	var out []int
	for i := range c.Members {
		if i != skip {
			out = append(out, i)
		}
	}
	return out
}
