package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// TestSinkKill9KeepsDatabaseAndStoreEqual kills -9 a member writing to
// MariaDB under load. Every write it acknowledged is already in MariaDB
// (sync acks); after the restart the database and the store agree, with no
// revision missing or doubled.
func TestSinkKill9KeepsDatabaseAndStoreEqual(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	p := testserver.StartProcess(t, t.TempDir(), "--mysql-dsn", dsn)
	c := testserver.NewClient(t, p.URL)

	// Some transactions that also delete the writer's previous key.
	acked := killUnderLoad(t, p, c, "/k9/", 1000, func(ctx context.Context, c *clientv3.Client, key string, i int) (int64, error) {
		if i%10 != 9 {
			return putKey(ctx, c, key, i)
		}
		prev := key[:len(key)-6] + fmt.Sprintf("%06d", i-1)
		r, err := c.Txn(ctx).Then(clientv3.OpPut(key, "t"), clientv3.OpDelete(prev)).Commit()
		if err != nil {
			return 0, err
		}
		return r.Header.Revision, nil
	})

	// Before any restart: every acknowledged write is in MariaDB.
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	missing := 0
	for _, a := range acked {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM kv_log WHERE revision = ? AND `key` = ?", a.rev, a.key).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged write %s at revision %d: %d history rows in MariaDB", a.key, a.rev, n)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged writes missing from MariaDB after kill -9", missing, len(acked))
	}

	p.Restart(t)
	c2 := testserver.NewClient(t, p.URL)
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	// One more write: the sink has then caught up with everything the log
	// replayed, and the revision continues.
	r, err := c2.Put(rctx, "/k9/after", "x")
	if err != nil {
		t.Fatal(err)
	}
	st := checkDatabase(t, c2, sqlsink.Config{MySQLDSN: dsn})
	if st.Revision != r.Header.Revision {
		t.Fatalf("database revision %d after restart, last write %d", st.Revision, r.Header.Revision)
	}
	t.Logf("%d acknowledged writes in MariaDB at the kill; after restart database and store agree at revision %d", len(acked), st.Revision)
}
