package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// benchPuts runs b.N puts of 256-byte values from workers goroutines over
// 8 client connections to url, and reports puts/s.
func benchPuts(b *testing.B, url string, workers int) {
	cs := make([]*clientv3.Client, 0, 8)
	for i := 0; i < 8; i++ {
		cs = append(cs, testserver.NewClient(b, url))
	}
	value := strings.Repeat("v", 256)
	runWorkers(b, workers, cs, "puts/s", func(c *clientv3.Client, w int, i int64) error {
		_, err := c.Put(context.Background(), fmt.Sprintf("/bench/%d/%d", w, i), value)
		return err
	})
}

// BenchmarkPut measures put throughput (256-byte values) with 1 and 64
// concurrent clients.
func BenchmarkPut(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			// ETCDSQL_BENCH_URL runs the load against another server,
			// e.g. etcd's, for comparison.
			url := os.Getenv("ETCDSQL_BENCH_URL")
			if url == "" {
				url = testserver.Start(b).URL
			}
			benchPuts(b, url, clients)
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
// each of 1,000 watchers (10 gRPC streams of 100) receiving its event. The
// put's value carries its issue time. The server is its own process, as in
// production. The watchers use the raw etcd Watch
// stream, one reader per stream, so that client-side dispatch (which on
// this 2-core machine competes with the server for CPU) stays small.
func BenchmarkPutToEvent1000Watchers(b *testing.B) {
	const streams, perStream = 10, 100
	url := os.Getenv("ETCDSQL_BENCH_URL")
	if url == "" {
		url = testserver.StartProcess(b, b.TempDir()).URL
	}
	c := testserver.NewClient(b, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lats := make([][]time.Duration, streams)
	var wg sync.WaitGroup
	for st := 0; st < streams; st++ {
		// A connection per stream, as gateways each have their own.
		wc := testserver.NewClient(b, url)
		stream, err := pb.NewWatchClient(wc.ActiveConnection()).Watch(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < perStream; i++ {
			req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
				Key: []byte("/lat/"), RangeEnd: []byte("/lat0")}}}
			if err := stream.Send(req); err != nil {
				b.Fatal(err)
			}
			if resp, err := stream.Recv(); err != nil || !resp.Created {
				b.Fatalf("create: %v %v", resp, err)
			}
		}
		wg.Add(1)
		go func(slot *[]time.Duration) {
			defer wg.Done()
			for len(*slot) < b.N*perStream {
				resp, err := stream.Recv()
				if err != nil {
					return
				}
				now := time.Now()
				for _, ev := range resp.Events {
					ns, _ := strconv.ParseInt(string(ev.Kv.Value), 10, 64)
					*slot = append(*slot, now.Sub(time.Unix(0, ns)))
				}
			}
		}(&lats[st])
	}
	var putLat []time.Duration
	if prof := os.Getenv("ETCDSQL_BENCH_PROFILE"); prof != "" {
		go func() {
			resp, err := http.Get(url + "/debug/pprof/" + os.Getenv("ETCDSQL_BENCH_PROFILE_KIND"))
			if err == nil {
				f, _ := os.Create(prof)
				io.Copy(f, resp.Body)
				f.Close()
				resp.Body.Close()
			}
		}()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.Put(ctx, "/lat/k", strconv.FormatInt(start.UnixNano(), 10)); err != nil {
			b.Fatal(err)
		}
		putLat = append(putLat, time.Since(start))
		// 100 puts/s: far above APISIX's rate of configuration changes,
		// and below what saturates this 2-core machine, where the 1,000
		// watchers' client runs beside the server.
		time.Sleep(10 * time.Millisecond)
	}
	sort.Slice(putLat, func(i, j int) bool { return putLat[i] < putLat[j] })
	b.ReportMetric(float64(putLat[len(putLat)*99/100].Microseconds())/1000, "put-p99-ms")
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Minute):
		b.Fatal("events missing after a minute")
	}
	b.StopTimer()
	if path := os.Getenv("ETCDSQL_BENCH_ALLOCS"); path != "" {
		if resp, err := http.Get(url + "/debug/pprof/allocs"); err == nil {
			f, _ := os.Create(path)
			io.Copy(f, resp.Body)
			f.Close()
			resp.Body.Close()
		}
	}
	var all []time.Duration
	for _, l := range lats {
		if len(l) != b.N*perStream {
			b.Fatalf("a stream got %d events, want %d", len(l), b.N*perStream)
		}
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
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
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
