package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// BenchmarkSinkPut measures put throughput with 64 clients on a MariaDB
// system of record, with sync and async acks.
func BenchmarkSinkPut(b *testing.B) {
	for _, ack := range []string{sqlsink.AckSync, sqlsink.AckAsync} {
		b.Run("ack="+ack, func(b *testing.B) {
			s := testserver.Start(b, testserver.WithMySQL(mysqltest.NewDatabase(b)), testserver.WithSinkAck(ack))
			benchPuts(b, 64, s.URL)
		})
	}
}

// BenchmarkMariaDBCeiling measures what MariaDB itself takes for the rows
// one put costs the sink (a history row and a current-state upsert):
// batched (256 puts per transaction from one connection, as the sink
// writes) and one transaction per put from 64 connections.
func BenchmarkMariaDBCeiling(b *testing.B) {
	for _, batch := range []int{256, 1} {
		b.Run(fmt.Sprintf("puts-per-commit=%d", batch), func(b *testing.B) {
			dsn := mysqltest.NewDatabase(b)
			// The sink creates the schema.
			sk, err := sqlsink.Open(context.Background(), sqlsink.Config{MySQLDSN: dsn, Ack: sqlsink.AckSync,
				MaxBatchRevisions: 1, MaxBatchBytes: 1 << 20, WriteTimeout: time.Second, ProbeInterval: time.Second, RetryMin: time.Millisecond, RetryMax: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			sk.Close()
			db, err := sql.Open("mysql", dsn)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			db.SetMaxOpenConns(64)
			value := []byte(strings.Repeat("v", 256))
			var rev atomic.Int64
			var wg sync.WaitGroup
			conns := 64
			if batch > 1 {
				conns = 1 // the sink writes from one connection
			}
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < conns; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						first := rev.Add(int64(batch)) - int64(batch) + 1
						if first > int64(b.N) {
							return
						}
						n := min(batch, int(int64(b.N)-first+1))
						if err := insertPuts(db, first, n, value); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
		})
	}
}

func insertPuts(db *sql.DB, first int64, n int, value []byte) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	logArgs := make([]any, 0, n*8)
	kvArgs := make([]any, 0, n*6)
	for i := 0; i < n; i++ {
		r := first + int64(i)
		key := []byte(fmt.Sprintf("/bench/%d", r))
		logArgs = append(logArgs, r, 0, 0, key, value, r, 1, 0)
		kvArgs = append(kvArgs, key, value, r, r, 1, 0)
	}
	row := func(cols int) string { return "(" + strings.TrimSuffix(strings.Repeat("?,", cols), ",") + ")" }
	rows := func(cols int) string { return strings.TrimSuffix(strings.Repeat(row(cols)+",", n), ",") }
	if _, err := tx.Exec("INSERT IGNORE INTO kv_log (revision, sub, deleted, `key`, value, create_revision, version, lease) VALUES "+rows(8), logArgs...); err != nil {
		return err
	}
	if _, err := tx.Exec("INSERT INTO kv (`key`, value, create_revision, mod_revision, version, lease) VALUES "+rows(6)+
		" ON DUPLICATE KEY UPDATE value = VALUES(value), mod_revision = VALUES(mod_revision)", kvArgs...); err != nil {
		return err
	}
	return tx.Commit()
}
