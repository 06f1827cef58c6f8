package sqlsink

import (
	"context"
	"database/sql"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
)

// A deposed leader paused in the middle of a batch holds the fence's lock.
// The new leader's writer must not wait for it: it ends that session (its
// id is recorded in meta) and writes.
func TestNewLeaderEndsDeposedWriterSession(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	cfg := DefaultConfig()
	cfg.MySQLDSN = dsn
	sk, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()

	// The deposed writer: its session id recorded, the fence locked in an
	// open transaction, then silence.
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	old, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var oldID int64
	if err := old.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&oldID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", oldID, metaWriterConn); err != nil {
		t.Fatal(err)
	}
	tx, err := old.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var fence int64
	if err := tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ? FOR UPDATE", metaLeaderTerm).Scan(&fence); err != nil {
		t.Fatal(err)
	}

	rs := newTestStore(t)
	rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}})
	start := time.Now()
	runUntil(t, sk, rs.s, func() bool { return sk.SunkRevision() == rs.s.Rev() })
	t.Logf("written %v after the lock was found held", time.Since(start).Round(time.Millisecond))
	if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = 99 WHERE name = ?", metaLeaderTerm); err == nil {
		t.Fatal("the deposed writer's transaction is still alive")
	}
	var term int64
	if err := db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaLeaderTerm).Scan(&term); err != nil || term != 1 {
		t.Fatalf("fence: %d %v", term, err)
	}
	var recorded int64
	if err := db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaWriterConn).Scan(&recorded); err != nil || recorded == oldID {
		t.Fatalf("writer session not recorded: %d %v", recorded, err)
	}
}
