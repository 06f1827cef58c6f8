package sqlsink

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
)

// A running sink whose term is fenced off while it writes (a newer leader
// raised the fence) stops with ErrFenced at its next batch and writes
// nothing of it; a sink whose term is above the fence raises it with its
// first batch. On each database.
func TestRunningSinkStopsWhenFenced(t *testing.T) {
	for _, db := range []string{"sqlite", "mariadb"} {
		t.Run(db, func(t *testing.T) {
			cfg := DefaultConfig()
			if db == "sqlite" {
				cfg.SQLitePath = filepath.Join(t.TempDir(), "db")
			} else {
				cfg.MySQLDSN = mysqltest.NewDatabase(t)
			}
			sk, err := Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer sk.Close()
			rs := newTestStore(t)
			put := func(k string) int64 {
				return rs.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}}).Put.Header.Revision
			}
			fence := func() int64 {
				var v int64
				if err := sk.DB().QueryRow("SELECT value FROM meta WHERE name = ?", metaLeaderTerm).Scan(&v); err != nil {
					t.Fatal(err)
				}
				return v
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- sk.Run(ctx, rs.s, 3) }()
			first := put("a")
			if err := sk.WaitRevision(ctx, first); err != nil {
				t.Fatal(err)
			}
			if f := fence(); f != 3 {
				t.Fatalf("fence after the first batch at term 3 = %d", f)
			}
			// A newer leader takes over the database.
			if _, err := sk.DB().Exec("UPDATE meta SET value = 7 WHERE name = ?", metaLeaderTerm); err != nil {
				t.Fatal(err)
			}
			put("b")
			select {
			case err := <-done:
				if !errors.Is(err, ErrFenced) {
					t.Fatalf("run after the fence was raised: %v, want ErrFenced", err)
				}
			case <-ctx.Done():
				t.Fatal("the sink kept running after its term was fenced off")
			}
			st, err := sk.State(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.Revision != first || st.LeaderTerm != 7 {
				t.Errorf("database after the fenced batch: revision %d, fence %d; want %d and 7", st.Revision, st.LeaderTerm, first)
			}
			var n int
			if err := sk.DB().QueryRow("SELECT COUNT(*) FROM kv").Scan(&n); err != nil || n != 1 {
				t.Errorf("kv rows after the fenced batch: %d, %v; want 1", n, err)
			}
		})
	}
}
