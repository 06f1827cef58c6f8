package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/internal/benchload"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/serverproc"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// benchPuts runs b.N puts of 256-byte values from workers goroutines over
// 8 client connections to the endpoints, and reports puts/s and latency.
func benchPuts(b *testing.B, workers int, endpoints ...string) {
	r, err := benchload.Puts(context.Background(), benchload.Load{Endpoints: endpoints, Workers: workers, Ops: b.N, Duration: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(r.OpsPerSec(), "puts/s")
	b.ReportMetric(benchload.Ms(r.Percentile(50)), "p50-ms")
	b.ReportMetric(benchload.Ms(r.Percentile(99)), "p99-ms")
}

// BenchmarkPut measures put throughput (256-byte values) with 1, 16 and
// 64 concurrent clients.
func BenchmarkPut(b *testing.B) {
	for _, clients := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			// ETCDSQL_BENCH_URL runs the load against another server,
			// e.g. etcd's, for comparison (comma-separated: a cluster's
			// members, the clients spread over them).
			url := os.Getenv("ETCDSQL_BENCH_URL")
			if url == "" {
				url = testserver.Start(b).URL
			}
			benchPuts(b, clients, strings.Split(url, ",")...)
		})
	}
}

// BenchmarkGet measures point reads, serializable and linearizable.
func BenchmarkGet(b *testing.B) {
	s := testserver.Start(b)
	c := s.Client(b)
	ctx := context.Background()
	if _, err := c.Put(ctx, "/bench/get", "value"); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		opts []clientv3.OpOption
	}{{"serializable", []clientv3.OpOption{clientv3.WithSerializable()}}, {"linearizable", nil}} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := c.Get(ctx, "/bench/get", mode.opts...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRangePrefix10k measures a linearizable prefix range of 10,000
// keys with 1 KiB values over gRPC (APISIX's full load is this shape).
func BenchmarkRangePrefix10k(b *testing.B) {
	s := testserver.Start(b)
	c := s.Client(b)
	ctx := context.Background()
	value := strings.Repeat("x", 1024)
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < 10000; i += 32 {
				if _, err := c.Put(ctx, fmt.Sprintf("/apisix/routes/%05d", i), value); err != nil {
					b.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := c.Get(ctx, "/apisix/routes/", clientv3.WithPrefix())
		if err != nil || len(r.Kvs) != 10000 {
			b.Fatalf("range: %d kvs, %v", len(r.Kvs), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/range")
}

// BenchmarkPutToEvent1000Watchers measures the time from issuing a put to
// each of 1,000 watchers (10 gRPC streams of 100, a connection each, as
// gateways have) receiving its event, at 100 puts/s: far above APISIX's
// rate of configuration changes, and below what saturates this 2-core
// machine, where the watchers' client runs beside the server. The put's
// value carries its issue time. The server is its own process, as in
// production.
func BenchmarkPutToEvent1000Watchers(b *testing.B) {
	url := os.Getenv("ETCDSQL_BENCH_URL")
	if url == "" {
		url = testserver.StartProcess(b, b.TempDir()).URL
	}
	// A comma-separated ETCDSQL_BENCH_URL: a cluster's members, as for
	// BenchmarkPut (the profile, if asked for, is the first one's).
	endpoints := strings.Split(url, ",")
	events, puts, err := benchload.WatchLatency(context.Background(), benchload.WatchLoad{
		Endpoints: endpoints, Watchers: 1000, Puts: b.N, Rate: 100,
		Ready: func() {
			if prof := os.Getenv("ETCDSQL_BENCH_PROFILE"); prof != "" {
				go saveProfile(endpoints[0]+"/debug/pprof/"+os.Getenv("ETCDSQL_BENCH_PROFILE_KIND"), prof)
			}
			b.ResetTimer()
		},
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(benchload.Ms(puts.Percentile(99)), "put-p99-ms")
	b.ReportMetric(benchload.Ms(events.Percentile(50)), "p50-ms")
	b.ReportMetric(benchload.Ms(events.Percentile(99)), "p99-ms")
}

// BenchmarkLeaseExpiry: 100 leases of 2 s without keepalives, granted over
// a second, each with a key, and a watcher of the keys: the lag from each
// lease's TTL end (counted from its grant's answer) to its key's DELETE
// event (p50, p99, max), on one member and on three (MariaDB; grants on
// one member, the watcher on another). b.N rounds of 100 leases.
func BenchmarkLeaseExpiry(b *testing.B) {
	for _, size := range []int{1, 3} {
		b.Run(fmt.Sprintf("members=%d", size), func(b *testing.B) {
			var endpoints []string
			if size == 1 {
				endpoints = []string{testserver.StartProcess(b, b.TempDir()).URL}
			} else {
				endpoints = testcluster.StartProcesses(b, size, "--mysql-dsn", mysqltest.NewDatabase(b)).Endpoints()
			}
			var lags []time.Duration
			b.ResetTimer()
			for range b.N {
				r, err := benchload.LeaseExpiry(context.Background(), benchload.LeaseLoad{Endpoints: endpoints, Leases: 100, TTL: 2 * time.Second, Spread: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				lags = append(lags, r.Lat...)
			}
			r := benchload.Result{Lat: lags}
			slices.Sort(r.Lat)
			b.ReportMetric(benchload.Ms(r.Percentile(50)), "p50-ms")
			b.ReportMetric(benchload.Ms(r.Percentile(99)), "p99-ms")
			b.ReportMetric(benchload.Ms(r.Max()), "max-ms")
		})
	}
}

// BenchmarkIdleWatcherRSS measures the server's resident memory per idle
// watcher: 10,000 watchers over 100 streams against an etcdsql process.
// One measurement whatever b.N is: starting processes per iteration would
// only measure the start-up.
func BenchmarkIdleWatcherRSS(b *testing.B) {
	const streams, perStream = 100, 100
	{
		p := testserver.StartProcess(b, b.TempDir())
		c := testserver.NewClient(b, p.URL)
		time.Sleep(500 * time.Millisecond) // settle after start-up; RSS has no end state to wait for
		before := rss(b, p.Pid())
		ctx, cancel := context.WithCancel(context.Background())
		for st := 0; st < streams; st++ {
			sctx := metadata.AppendToOutgoingContext(ctx, "stream", strconv.Itoa(st))
			for w := 0; w < perStream; w++ {
				ch := c.Watch(sctx, fmt.Sprintf("/idle/%d/%d", st, w), clientv3.WithCreatedNotify())
				<-ch
			}
		}
		time.Sleep(time.Second) // settle after the last watch; RSS has no end state to wait for
		after := rss(b, p.Pid())
		cancel()
		p.Kill()
		b.ReportMetric(float64(after-before)/float64(streams*perStream), "rss-bytes/watcher")
	}
}

// rss reads a process's resident set size in bytes.
func rss(b *testing.B, pid int) int64 {
	_, n, err := serverproc.Usage(pid)
	if err != nil {
		b.Fatal(err)
	}
	return n
}
