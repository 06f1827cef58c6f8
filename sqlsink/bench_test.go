package sqlsink

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
)

// BenchmarkSinkBatch measures the sink writing batches of puts (256-byte
// values, 16 keys being overwritten among many new ones, as 16 writers
// do) with the leader's sync acks: each iteration applies one batch to
// the store and waits until the database has it. It reports the time per
// put.
func BenchmarkSinkBatch(b *testing.B) {
	for _, db := range []string{"sqlite", "mariadb"} {
		for _, size := range []int{1, 8, 64, 512} {
			b.Run(fmt.Sprintf("db=%s/batch=%d", db, size), func(b *testing.B) {
				cfg := DefaultConfig()
				if db == "sqlite" {
					cfg.SQLitePath = filepath.Join(b.TempDir(), "db")
				} else {
					cfg.MySQLDSN = mysqltest.NewDatabase(b)
				}
				sk, err := Open(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				defer sk.Close()
				st := newTestStore(b)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- sk.Run(ctx, st.s, 1) }()
				value := []byte(strings.Repeat("v", 256))
				cpu0 := cpuTime()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					var res int64
					for j := 0; j < size; j++ {
						key := fmt.Sprintf("/bench/%d/%d", j%16, i*size+j)
						res = st.apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(key), Value: value}}).Put.Header.Revision
					}
					if err := sk.WaitRevision(ctx, res); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*size), "ns/put")
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N*size), "cpu-ns/put")
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// cpuTime is the CPU time (user and system) this process has used: less
// sensitive than wall time to what else the machine runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
