package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/serverproc"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// BenchmarkSnapshotSave times `etcdctl snapshot save` of 100,000 keys of
// 1 KiB (written as 1,000 transactions of 100 puts) from an etcdsql
// process, reporting the file size and how much the member's peak
// resident set grew, beside a real etcd 3.4 holding the same keys.
func BenchmarkSnapshotSave(b *testing.B) {
	for _, target := range []string{"etcdsql", "etcd"} {
		b.Run(target, func(b *testing.B) {
			var url string
			pid := 0
			if target == "etcd" {
				url = difftest.StartEtcd(b)
			} else {
				p := testserver.StartProcess(b, filepath.Join(b.TempDir(), "etcdsql"))
				url, pid = p.URL, p.Pid()
			}
			loadSnapshotKeys(b, testserver.NewClient(b, url))
			var peak int64
			if pid != 0 {
				peak = peakRSS(b, pid)
			}
			path := filepath.Join(b.TempDir(), "snap.db")
			b.ResetTimer()
			for range b.N {
				difftest.SaveSnapshot(b, url, path)
			}
			b.StopTimer()
			fi, err := os.Stat(path)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
			if pid != 0 {
				b.ReportMetric(float64(peakRSS(b, pid)-peak)/1e6, "peak-rss-growth-MB")
			}
		})
	}
}

// loadSnapshotKeys writes 100,000 keys of 1 KiB in 1,000 transactions.
func loadSnapshotKeys(b *testing.B, c *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	v := strings.Repeat("x", 1024)
	for t := range 1000 {
		ops := make([]clientv3.Op, 100)
		for i := range ops {
			ops[i] = clientv3.OpPut(fmt.Sprintf("/apisix/routes/%06d", t*100+i), v)
		}
		if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

func peakRSS(b *testing.B, pid int) int64 {
	n, err := serverproc.PeakRSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
