package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

func percentile(d []time.Duration, p int) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, len(d)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// gogoCodec decodes etcd's messages with their generated code: the
// benchmark's 9,000 watchers share this machine's two cores with the
// members, and protobuf reflection would make the client the bottleneck.
type gogoCodec struct{}

func (gogoCodec) Name() string { return "proto" }

func (gogoCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, err := v.(interface{ Marshal() ([]byte, error) }).Marshal()
	return mem.BufferSlice{mem.SliceBuffer(b)}, err
}

func (gogoCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return v.(interface{ Unmarshal([]byte) error }).Unmarshal(data.Materialize())
}

// rawWatchResponse reads only what the benchmark needs from a
// WatchResponse (created, and each event's value), without building the
// message: the client's decoding would otherwise take half the machine.
type rawWatchResponse struct {
	created bool
	values  [][]byte
}

func (r *rawWatchResponse) Unmarshal(b []byte) error {
	r.created, r.values = false, r.values[:0]
	return walkFields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 3 && typ == protowire.VarintType:
			r.created = x != 0
		case num == 11 && typ == protowire.BytesType: // events
			return walkFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
				if num != 2 || typ != protowire.BytesType { // kv
					return nil
				}
				return walkFields(v, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
					if num == 5 && typ == protowire.BytesType { // value
						r.values = append(r.values, v)
					}
					return nil
				})
			})
		}
		return nil
	})
}

func walkFields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := f(num, typ, v, x); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// BenchmarkClusterPut compares put throughput and latency of one member
// and of three (in-process, MariaDB as the system of record, sync acks),
// with clients spread over the members.
func BenchmarkClusterPut(b *testing.B) {
	for _, size := range []int{1, 3} {
		for _, workers := range []int{1, 64} {
			b.Run(fmt.Sprintf("nodes=%d/clients=%d", size, workers), func(b *testing.B) {
				c := testcluster.Start(b, testcluster.Options{Size: size, MySQLDSN: mysqltest.NewDatabase(b)})
				var cs []*clientv3.Client
				for i := range 8 {
					cs = append(cs, c.Client(i%size))
				}
				value := strings.Repeat("v", 256)
				lats := make([][]time.Duration, workers)
				var n atomic.Int64
				ctx := context.Background()
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cl := cs[w%len(cs)]
						for i := n.Add(1); i <= int64(b.N); i = n.Add(1) {
							t0 := time.Now()
							if _, err := cl.Put(ctx, fmt.Sprintf("/bench/%d/%d", w, i), value); err != nil {
								b.Error(err)
								return
							}
							lats[w] = append(lats[w], time.Since(t0))
						}
					}()
				}
				wg.Wait()
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "puts/s")
				all := slices.Concat(lats...)
				b.ReportMetric(ms(percentile(all, 50)), "p50-ms")
				b.ReportMetric(ms(percentile(all, 99)), "p99-ms")
			})
		}
	}
}

// BenchmarkClusterWatchFanout: three member processes (MariaDB as the
// system of record), 3,000 watchers on each (30 streams of 100, one
// connection per stream, as gateways have); each put's events must reach
// all 9,000 watchers. Reports put→event latency over every delivery.
func BenchmarkClusterWatchFanout(b *testing.B) {
	const streamsPerMember, perStream = 30, 100
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
	writer := testserver.NewClient(b, endpoints...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lats := make([][]time.Duration, 0, 3*streamsPerMember)
	var wg sync.WaitGroup
	for m, url := range endpoints {
		for range streamsPerMember {
			wc := testserver.NewClient(b, url)
			stream, err := wc.ActiveConnection().NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true},
				"/etcdserverpb.Watch/Watch", grpc.ForceCodecV2(gogoCodec{}))
			if err != nil {
				b.Fatal(err)
			}
			for range perStream {
				req := &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
					Key: []byte("/fan/"), RangeEnd: []byte("/fan0")}}}
				if err := stream.SendMsg(req); err != nil {
					b.Fatal(err)
				}
				var resp rawWatchResponse
				if err := stream.RecvMsg(&resp); err != nil || !resp.created {
					b.Fatalf("member %d: create: %+v %v", m, resp, err)
				}
			}
			lats = append(lats, nil)
			slot := &lats[len(lats)-1]
			wg.Add(1)
			go func() {
				defer wg.Done()
				var resp rawWatchResponse
				for len(*slot) < b.N*perStream {
					if err := stream.RecvMsg(&resp); err != nil {
						return
					}
					now := time.Now()
					for _, v := range resp.values {
						ns, _ := strconv.ParseInt(string(v), 10, 64)
						*slot = append(*slot, now.Sub(time.Unix(0, ns)))
					}
				}
			}()
		}
	}
	var putLat []time.Duration
	if prof := os.Getenv("ETCDSQL_BENCH_PROFILE"); prof != "" {
		go saveProfile(endpoints[1]+"/debug/pprof/profile?seconds=15", prof)
	}
	b.ResetTimer()
	selfCPU, membersCPU := processCPU(b, os.Getpid()), processCPU(b, pids...)
	for range b.N {
		start := time.Now()
		if _, err := writer.Put(ctx, "/fan/k", strconv.FormatInt(start.UnixNano(), 10)); err != nil {
			b.Fatal(err)
		}
		putLat = append(putLat, time.Since(start))
		// 20 puts/s, each fanned out to 9,000 watchers: far above
		// APISIX's rate of configuration changes.
		time.Sleep(50 * time.Millisecond)
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Minute):
		b.Fatal("events missing after a minute")
	}
	b.StopTimer()
	// Where the machine's two cores went, per put: the benchmark's own
	// process (the writer and the 9,000 watchers' receiving) and the
	// members.
	b.ReportMetric(ms(processCPU(b, os.Getpid())-selfCPU)/float64(b.N), "bench-cpu-ms/op")
	if len(pids) > 0 {
		b.ReportMetric(ms(processCPU(b, pids...)-membersCPU)/float64(b.N), "members-cpu-ms/op")
	}
	var all []time.Duration
	for _, l := range lats {
		if len(l) != b.N*perStream {
			b.Fatalf("a stream got %d events, want %d", len(l), b.N*perStream)
		}
		all = append(all, l...)
	}
	for m := range 3 {
		member := slices.Concat(lats[m*streamsPerMember : (m+1)*streamsPerMember]...)
		b.Logf("watchers on member %d: p50 %.1f ms, p99 %.1f ms", m, ms(percentile(member, 50)), ms(percentile(member, 99)))
	}
	b.Logf("put p50 %.1f ms", ms(percentile(putLat, 50)))
	b.ReportMetric(ms(percentile(putLat, 99)), "put-p99-ms")
	b.ReportMetric(ms(percentile(all, 50)), "p50-ms")
	b.ReportMetric(ms(percentile(all, 99)), "p99-ms")
}

// processCPU returns the CPU time (user and system) the processes have
// used, from /proc.
func processCPU(b *testing.B, pids ...int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatal(err)
		}
		// The command name, in parentheses, may hold spaces: count
		// fields after it. utime and stime are fields 14 and 15.
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	}
	return total
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
	b.ReportMetric(ms(sum/time.Duration(len(took))), "mean-ms")
	b.ReportMetric(ms(slices.Max(took)), "max-ms")
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
