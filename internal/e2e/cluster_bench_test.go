package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/benchload"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/serverproc"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

// BenchmarkClusterPut compares put throughput and latency of one member
// and of three (in-process, MariaDB as the system of record, sync acks),
// with clients spread over the members.
func BenchmarkClusterPut(b *testing.B) {
	for _, size := range []int{1, 3} {
		for _, workers := range []int{1, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", size, workers), func(b *testing.B) {
				c := testcluster.Start(b, testcluster.Options{Size: size, MySQLDSN: mysqltest.NewDatabase(b)})
				b.ResetTimer()
				benchPuts(b, workers, c.Endpoints()...)
			})
		}
	}
}

// BenchmarkClusterWatchFanout: three member processes (MariaDB as the
// system of record), 3,000 watchers on each (30 streams of 100, one
// connection per stream, as gateways have); each put's events must reach
// all 9,000 watchers. Reports put→event latency over every delivery.
func BenchmarkClusterWatchFanout(b *testing.B) {
	// ETCDSQL_BENCH_URLS (three comma-separated client URLs) runs the same
	// load against another cluster, e.g. etcd's, for comparison.
	var endpoints []string
	var pids []int
	if urls := os.Getenv("ETCDSQL_BENCH_URLS"); urls != "" {
		endpoints = strings.Split(urls, ",")
	} else {
		ps := testcluster.StartProcesses(b, 3, "--mysql-dsn", mysqltest.NewDatabase(b), "--enable-pprof")
		endpoints = ps.Endpoints()
		for i := range 3 {
			pids = append(pids, ps.Pid(i))
		}
	}
	var selfCPU, membersCPU time.Duration
	events, puts, err := benchload.WatchLatency(context.Background(), benchload.WatchLoad{
		// 20 puts/s, each fanned out to 9,000 watchers: far above
		// APISIX's rate of configuration changes.
		Endpoints: endpoints, Watchers: 3000, Puts: b.N, Rate: 20,
		Ready: func() {
			if prof := os.Getenv("ETCDSQL_BENCH_PROFILE"); prof != "" {
				go saveProfile(endpoints[1]+"/debug/pprof/profile?seconds=15", prof)
			}
			b.ResetTimer()
			selfCPU, membersCPU = processCPU(b, os.Getpid()), processCPU(b, pids...)
		},
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	// Where the machine's two cores went, per put: the benchmark's own
	// process (the writer and the 9,000 watchers' receiving) and the
	// members.
	b.ReportMetric(benchload.Ms(processCPU(b, os.Getpid())-selfCPU)/float64(b.N), "bench-cpu-ms/op")
	if len(pids) > 0 {
		b.ReportMetric(benchload.Ms(processCPU(b, pids...)-membersCPU)/float64(b.N), "members-cpu-ms/op")
	}
	b.Logf("put p50 %.1f ms", benchload.Ms(puts.Percentile(50)))
	b.ReportMetric(benchload.Ms(puts.Percentile(99)), "put-p99-ms")
	b.ReportMetric(benchload.Ms(events.Percentile(50)), "p50-ms")
	b.ReportMetric(benchload.Ms(events.Percentile(99)), "p99-ms")
}

// processCPU returns the CPU time (user and system) the processes have
// used.
func processCPU(b *testing.B, pids ...int) time.Duration {
	cpu, _, err := serverproc.Usage(pids...)
	if err != nil {
		b.Fatal(err)
	}
	return cpu
}

// BenchmarkClusterFailover: three member processes with default raft
// timing (1 s election timeout); kill -9 the leader and measure until the
// first write through the surviving members succeeds.
func BenchmarkClusterFailover(b *testing.B) {
	ps := testcluster.StartProcesses(b, 3, "--mysql-dsn", mysqltest.NewDatabase(b))
	ctx := context.Background()
	var took []time.Duration
	b.ResetTimer()
	for range b.N {
		leader := procLeader(b, ps)
		survivors := ps.EndpointsExcept(leader)
		cl := testserver.NewClient(b, survivors...)
		if _, err := cl.Put(ctx, "failover", "before"); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		ps.Kill(leader)
		for {
			octx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			_, err := cl.Put(octx, "failover", "after")
			cancel()
			if err == nil {
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("no write 30 s after the leader was killed: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took = append(took, time.Since(start))
		b.StopTimer()
		ps.Restart(leader)
		b.StartTimer()
	}
	b.StopTimer()
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	b.ReportMetric(benchload.Ms(sum/time.Duration(len(took))), "mean-ms")
	b.ReportMetric(benchload.Ms(slices.Max(took)), "max-ms")
}

// procLeader returns the index of the process that leads.
func procLeader(b testing.TB, ps *testcluster.Procs) int {
	b.Helper()
	cl := testserver.NewClient(b, ps.Endpoints()...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cl.Status(ctx, ps.Endpoints()[0])
		cancel()
		if err == nil && st.Leader != 0 {
			for i, p := range ps.Procs {
				if node.MemberID(p.Name) == st.Leader {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatal("no leader")
	return -1
}

func saveProfile(url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return
	}
	io.Copy(f, resp.Body)
	f.Close()
}
