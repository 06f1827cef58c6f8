package node_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/internal/faultproxy"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// rowRevision returns the mod_revision of key in the database's kv table,
// or 0 when the row is missing.
func rowRevision(t *testing.T, db *sql.DB, key string) int64 {
	t.Helper()
	var rev int64
	err := db.QueryRow("SELECT mod_revision FROM kv WHERE `key` = ?", key).Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return 0
	}
	if err != nil {
		t.Fatalf("query kv row %s: %v", key, err)
	}
	return rev
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestClusterOnMariaDB runs a 3-member cluster whose system of record is
// MariaDB, with each ack mode: with sync a write is in the database when
// it is acknowledged, with async it follows. Both keep writing across a
// leader crash, with the new leader's sink resuming.
func TestClusterOnMariaDB(t *testing.T) {
	for _, ack := range []string{sqlsink.AckSync, sqlsink.AckAsync} {
		t.Run(ack, func(t *testing.T) { testClusterOnMariaDB(t, ack) })
	}
}

// testClusterOnMariaDB writes through a follower and across a leader
// crash, with the sink acknowledging writes as ack says.
func testClusterOnMariaDB(t *testing.T, ack string) {
	dsn := mysqltest.NewDatabase(t)
	db := openDB(t, dsn)
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn, SinkAck: ack})
	ctx := testCtx(t)
	leader := c.Leader(10 * time.Second)
	f := others(c, leader)[0]
	fc := c.Client(f)

	for i := 0; i < 5; i++ {
		key := fmt.Sprintf("/db/%d", i)
		p, err := fc.Put(ctx, key, "v")
		if err != nil {
			t.Fatal(err)
		}
		inDB(t, db, ack, key, p.Header.Revision)
	}
	for i := range c.Members {
		if err := c.Running(i).Node.SinkHealthy(); err != nil {
			t.Fatalf("member %d: sink unhealthy: %v", i, err)
		}
		if err := c.Running(i).Node.SinkFatal(); err != nil {
			t.Fatalf("member %d: sink fatal: %v", i, err)
		}
	}
	leader = c.Leader(10 * time.Second)
	_, body := httpGet(t, c.Members[leader].URL+"/metrics")
	if ack == sqlsink.AckSync {
		if lag := metric(t, body, "etcdsql_sink_lag_revisions"); lag != 0 {
			t.Fatalf("sink lag on leader with sync ack = %v", lag)
		}
	}

	c.Crash(leader)
	nl := c.Leader(15 * time.Second)
	p, err := c.Client(nl).Put(ctx, "/db/after", "v")
	if err != nil {
		t.Fatalf("write after leader crash: %v", err)
	}
	inDB(t, db, ack, "/db/after", p.Header.Revision)
	if c.Running(nl).Node.SinkHealthy() != nil {
		t.Fatalf("new leader's sink: %v", c.Running(nl).Node.SinkHealthy())
	}
}

// inDB checks that key is in the database at revision rev: at once with
// the sync ack, eventually with the async one.
func inDB(t *testing.T, db *sql.DB, ack, key string, rev int64) {
	t.Helper()
	if ack == sqlsink.AckSync {
		if got := rowRevision(t, db, key); got != rev {
			t.Fatalf("sync ack: %s in the database at revision %d, want %d", key, got, rev)
		}
		return
	}
	eventually(t, 10*time.Second, "async: "+key+" reaches the database", func() error {
		if got := rowRevision(t, db, key); got != rev {
			return fmt.Errorf("at revision %d, want %d", got, rev)
		}
		return nil
	})
}

// TestClusterMariaDBOutage cuts the leader's database connections: writes
// are refused with Unavailable while reads go on, and writes resume by
// themselves once the database is back.
func TestClusterMariaDBOutage(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	proxy := faultproxy.New(t, mysqltest.Addr())
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.DSNWithAddr(dsn, proxy.Addr()), Size: 3})
	ctx := testCtx(t)
	leader := c.Leader(10 * time.Second)
	ln := c.Running(leader).Node
	fc := c.Client(others(c, leader)[0])
	before, err := fc.Put(ctx, "/out", "before")
	if err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	eventually(t, 10*time.Second, "leader sees the database down", func() error {
		if ln.SinkHealthy() == nil {
			// Writes make the sink find out.
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			fc.Put(pctx, "/out/probe", "x")
			cancel()
			return errors.New("sink still healthy")
		}
		return nil
	})
	start := time.Now()
	_, err = fc.Put(ctx, "/out", "during")
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("write during outage: %v, want code Unavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("refusal took %v, want it fast", d)
	}
	r, err := fc.Get(ctx, "/out")
	if err != nil || string(r.Kvs[0].Value) != "before" || r.Kvs[0].ModRevision != before.Header.Revision {
		t.Fatalf("read during outage = %v, %v", r, err)
	}

	proxy.Restore()
	eventually(t, 20*time.Second, "writes resume after the database returns", func() error {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := fc.Put(pctx, "/out", "after")
		return err
	})
	if err := ln.SinkHealthy(); err != nil {
		t.Fatalf("sink after recovery: %v", err)
	}
	r, err = c.Client(leader).Get(ctx, "/out")
	if err != nil || string(r.Kvs[0].Value) != "after" {
		t.Fatalf("read after recovery = %v, %v", r, err)
	}
}

// TestClusterRebuiltFromDatabase rebuilds a three-member cluster from its
// database: each member that loaded the database's state has it as a raft
// snapshot before raft starts (so a leader sends that snapshot, never the
// log from its first entry, to a member without the state), and every
// member, read on its own, holds every key.
func TestClusterRebuiltFromDatabase(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	ctx := testCtx(t)
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	c.Leader(10 * time.Second)
	for i := 0; i < 20; i++ {
		if _, err := c.Client().Put(ctx, fmt.Sprintf("/rebuilt/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()

	c2 := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	c2.Leader(10 * time.Second)
	for i := range c2.Members {
		eventually(t, 10*time.Second, fmt.Sprintf("member %d holds the loaded state", i), func() error {
			if st := c2.Running(i).Node.RaftStats(); st["last_snapshot_index"] == "0" {
				return fmt.Errorf("no raft snapshot: %v", st)
			}
			r, err := c2.Client(i).Get(ctx, "/rebuilt/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
			if err != nil || r.Count != 20 {
				return fmt.Errorf("serializable count = %v, %v; want 20", r, err)
			}
			return nil
		})
	}
}

// TestRestartAfterCrashInBootstrapFromDatabase: a member that loaded the
// database's state and stopped right after writing raft's bootstrap entry
// (before the snapshot of that state) starts again with every key, at the
// database's revision, and goes on from there.
func TestRestartAfterCrashInBootstrapFromDatabase(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	ctx := testCtx(t)
	s := testserver.Start(t, testserver.WithMySQL(dsn))
	var rev int64
	for i := 0; i < 20; i++ {
		r, err := s.Client(t).Put(ctx, fmt.Sprintf("/crash/%02d", i), "v")
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	crash := errors.New("crash after the bootstrap entry")
	node.SetBootstrapCrash(crash)
	_, err := testserver.TryStart(t, testserver.WithMySQL(dsn), testserver.WithDataDir(dir))
	node.SetBootstrapCrash(nil)
	if !errors.Is(err, crash) {
		t.Fatalf("start with the crash = %v, want %v", err, crash)
	}
	if _, err := os.Stat(filepath.Join(dir, "base-snapshot-pending")); err != nil {
		t.Fatalf("the crashed start left no loaded-state marker: %v", err)
	}

	s2 := testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(dir))
	c := s2.Client(t)
	g, err := c.Get(ctx, "/crash/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || g.Count != 20 || g.Header.Revision != rev {
		t.Fatalf("after the restart: %v, %v; want 20 keys at revision %d", g, err, rev)
	}
	r, err := c.Put(ctx, "/crash/next", "x")
	if err != nil || r.Header.Revision != rev+1 {
		t.Fatalf("put after the restart = %v, %v; want revision %d", r, err, rev+1)
	}
	if got := rowRevision(t, openDB(t, dsn), "/crash/next"); got != rev+1 {
		t.Fatalf("database row of /crash/next at revision %d, want %d", got, rev+1)
	}
}

// TestLeaderStopSettlesSyncWrites: a leader stopped gracefully under
// writes, with sync acks, answers each write it took: acknowledged (in
// raft and in the database) or refused before raft took it. None is left
// waiting for a database commit that the stopped leader's sink will never
// make, to end on its deadline with an unknown outcome ("request timed
// out") or with "leader changed".
func TestLeaderStopSettlesSyncWrites(t *testing.T) {
	syncWritesAcross(t, func(c *testcluster.Cluster, leader int) { c.Stop(leader) })
}

// TestLeaderChangeSettlesSyncWrites: when leadership moves without the
// leader's hand-over (raft's own transfer, as an election after a timeout
// would), the writes it committed in raft but had not yet stored in the
// database are acknowledged once the next leader's sink has stored them,
// not left to time out with their outcome unknown.
func TestLeaderChangeSettlesSyncWrites(t *testing.T) {
	syncWritesAcross(t, func(c *testcluster.Cluster, leader int) {
		if err := node.TransferLeadership(c.Running(leader).Node); err != nil {
			t.Errorf("leadership transfer: %v", err)
		}
	})
}

// syncWritesAcross runs 8 writers against three members on MariaDB with
// sync acks, with the database's replies held 20 ms (so that writes wait
// for their commit well after raft committed them), disrupts the leader
// after a second, and checks that every put was acknowledged and is in the
// database at its revision.
func syncWritesAcross(t *testing.T, disrupt func(c *testcluster.Cluster, leader int)) {
	dsn := mysqltest.NewDatabase(t)
	proxy := faultproxy.New(t, mysqltest.Addr())
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.DSNWithAddr(dsn, proxy.Addr())})
	l := c.Leader(10 * time.Second)
	proxy.Delay(20 * time.Millisecond)
	cli := c.Client() // every member: the others forward to the leader, and take over
	const writers = 8
	type outcome struct {
		key string
		rev int64
		err error
	}
	results := make(chan outcome, writers*5000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("/stop/%d/%04d", w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := cli.Put(ctx, key, "v")
				cancel()
				o := outcome{key: key, err: err}
				if err == nil {
					o.rev = r.Header.Revision
				}
				results <- o
			}
		}()
	}
	time.Sleep(time.Second)
	disrupt(c, l)
	time.Sleep(500 * time.Millisecond) // writes go on with the next leader
	close(stop)
	wg.Wait()
	close(results)

	db := openDB(t, dsn)
	acked := 0
	for o := range results {
		switch {
		case o.err == nil:
			acked++
			if got := rowRevision(t, db, o.key); got != o.rev {
				t.Errorf("acknowledged put of %s at revision %d: the database has revision %d", o.key, o.rev, got)
			}
		case errors.Is(o.err, rpctypes.ErrTimeout), errors.Is(o.err, rpctypes.ErrLeaderChanged),
			errors.Is(o.err, context.DeadlineExceeded), status.Code(o.err) == codes.DeadlineExceeded:
			t.Errorf("put of %s ended with an unknown outcome: %v", o.key, o.err)
		default:
			t.Errorf("put of %s failed: %v", o.key, o.err)
		}
	}
	t.Logf("%d puts acknowledged", acked)
	if acked < 100 {
		t.Fatalf("only %d puts acknowledged", acked)
	}
}
