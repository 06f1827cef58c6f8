package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// dialects runs a test on MariaDB and on SQLite, each time with a fresh
// database, returning the options that select it and a config to inspect
// it with.
func dialects(t *testing.T, fn func(t *testing.T, opt testserver.Option, inspect func(dataDir string) sqlsink.Config)) {
	t.Run("mariadb", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		fn(t, testserver.WithMySQL(dsn), func(string) sqlsink.Config { return sqlsink.Config{MySQLDSN: dsn} })
	})
	t.Run("sqlite", func(t *testing.T) {
		fn(t, func(*node.MemberConfig) {}, func(dataDir string) sqlsink.Config {
			return sqlsink.Config{SQLitePath: filepath.Join(dataDir, "etcdsql.db")}
		})
	})
}

// checkDatabase compares the database with the member at the database's
// high-water mark, and the history rows, and fails on any difference.
func checkDatabase(t *testing.T, c *clientv3.Client, cfg sqlsink.Config) sqlsink.State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sqlsink.OpenReadOnly(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	member, err := c.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(st.Revision))
	if err != nil {
		t.Fatal(err)
	}
	diffs := sqlsink.CompareKVs(rows, member.Kvs)
	hist, err := db.CheckHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diffs = append(diffs, hist...)
	for i, d := range diffs {
		if i == 20 {
			t.Errorf("... %d differences in all", len(diffs))
			break
		}
		t.Error(d)
	}
	return st
}

// TestSinkMatchesStoreAfterMixedLoad: after 20,000 mixed writes (puts,
// txns, ranged deletes, leases that expire or are revoked, compactions),
// the kv table equals the store at the database's revision key by key and
// every revision since the compact revision has history rows.
func TestSinkMatchesStoreAfterMixedLoad(t *testing.T) {
	dialects(t, func(t *testing.T, opt testserver.Option, inspect func(string) sqlsink.Config) {
		s := testserver.Start(t, opt)
		c := s.Client(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		const workers, perWorker = 8, 2500
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				rng := rand.New(rand.NewSource(int64(w)))
				var lease clientv3.LeaseID
				for i := 0; i < perWorker; i++ {
					key := fmt.Sprintf("/mix/%03d", rng.Intn(500))
					var err error
					switch op := rng.Intn(100); {
					case op < 50:
						_, err = c.Put(ctx, key, fmt.Sprintf("v%d-%d", w, i))
					case op < 65:
						other := fmt.Sprintf("/mix/%03d", rng.Intn(500))
						if other == key {
							other += "x"
						}
						_, err = c.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), ">", 0)).
							Then(clientv3.OpPut(key, "txn"), clientv3.OpPut(other, "txn")).
							Else(clientv3.OpPut(key, "created")).Commit()
					case op < 75:
						_, err = c.Delete(ctx, key[:len(key)-1], clientv3.WithPrefix())
					case op < 85:
						if lease == 0 || rng.Intn(10) == 0 {
							g, gerr := c.Grant(ctx, 2) // left to expire during the run
							if gerr != nil {
								err = gerr
								break
							}
							lease = g.ID
						}
						_, err = c.Put(ctx, key+"/leased", "l", clientv3.WithLease(lease))
						if err != nil && err.Error() == "etcdserver: requested lease not found" {
							lease, err = 0, nil // expired meanwhile
						}
					case op < 90:
						if lease != 0 {
							_, err = c.Revoke(ctx, lease)
							if err != nil && err.Error() == "etcdserver: requested lease not found" {
								err = nil
							}
							lease = 0
						}
					case op < 91 && w == 0:
						r, gerr := c.Get(ctx, "rev")
						if gerr == nil && r.Header.Revision > 200 {
							_, err = c.Compact(ctx, r.Header.Revision-100)
						}
					default:
						_, err = c.Put(ctx, key, "p")
					}
					if err != nil {
						errs <- fmt.Errorf("worker %d op %d: %w", w, i, err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Let the last leases expire, so expiry deletions are in the log.
		waitFor(t, ctx, "every lease expired", func() bool {
			l, err := c.Leases(ctx)
			return err == nil && len(l.Leases) == 0
		})
		r, err := c.Put(ctx, "/mix/last", "x")
		if err != nil {
			t.Fatal(err)
		}
		st := checkDatabase(t, c, inspect(s.DataDir))
		if st.Revision != r.Header.Revision {
			t.Fatalf("database revision %d, last acknowledged write %d (sync acks)", st.Revision, r.Header.Revision)
		}
		if st.CompactRev <= 0 {
			t.Fatalf("no compaction reached the database (compact revision %d)", st.CompactRev)
		}
		t.Logf("%d writes; database at revision %d, compact revision %d", workers*perWorker, st.Revision, st.CompactRev)
	})
}
