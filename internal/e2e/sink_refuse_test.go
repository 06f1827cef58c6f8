package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// startErr starts a member that is expected to refuse to start.
func startErr(t *testing.T, dataDir, dsn string) error {
	t.Helper()
	nc := node.DefaultConfig()
	nc.Name, nc.DataDir, nc.PeerAddr = "m1", dataDir, "127.0.0.1:0"
	nc.HeartbeatTimeout, nc.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
	sc := sqlsink.DefaultConfig()
	sc.MySQLDSN = dsn
	nc.Sink = &sc
	m, err := node.StartMember(node.MemberConfig{Node: nc, RPC: rpc.DefaultConfig(), ListenClientURLs: []string{"http://127.0.0.1:0"}})
	if err == nil {
		m.Close()
	}
	return err
}

// TestMemberRefusesADatabaseThatDisagrees: another cluster's database, and
// a database ahead of the member's raft state, stop the member at start
// with an error that says what to do.
func TestMemberRefusesADatabaseThatDisagrees(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dsnA, dsnB := mysqltest.NewDatabase(t), mysqltest.NewDatabase(t)
	dirA := t.TempDir()
	a := testserver.Start(t, testserver.WithDataDir(dirA), testserver.WithMySQL(dsnA))
	if _, err := a.Client(t).Put(ctx, "/x", "1"); err != nil {
		t.Fatal(err)
	}
	snapshotDir := filepath.Join(t.TempDir(), "copy")
	a.Close()
	// Keep A's raft state as it is now, to start it later behind its database.
	if err := os.CopyFS(snapshotDir, os.DirFS(dirA)); err != nil {
		t.Fatal(err)
	}
	b := testserver.Start(t, testserver.WithMySQL(dsnB))
	if _, err := b.Client(t).Put(ctx, "/y", "1"); err != nil {
		t.Fatal(err)
	}
	b.Close()

	// A's data dir on B's database: another cluster.
	err := startErr(t, dirA, dsnB)
	if err == nil || !strings.Contains(err.Error(), "belongs to another cluster") || !strings.Contains(err.Error(), "remove its data dir") {
		t.Fatalf("other cluster's database: %v", err)
	}

	// A's database moves on (A restarted), then an older copy of A's data
	// dir starts on it: the database is ahead of that member.
	a2 := testserver.Start(t, testserver.WithDataDir(dirA), testserver.WithMySQL(dsnA))
	for i := 0; i < 5; i++ {
		if _, err := a2.Client(t).Put(ctx, "/x", "more"); err != nil {
			t.Fatal(err)
		}
	}
	a2.Close()
	// The older copy's raft log holds fewer revisions than the database.
	os.Remove(filepath.Join(snapshotDir, "etcdsql.db"))
	err = startErr(t, snapshotDir, dsnA)
	if err == nil || !strings.Contains(err.Error(), "ahead") || !strings.Contains(err.Error(), "remove the member's data dir") {
		t.Fatalf("database ahead of the member: %v", err)
	}
}
