package apisixsim

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/serverproc"
	"github.com/etcdsql/etcdsql/internal/testcluster"
)

// BenchmarkGateways200: 200 simulated APISIX gateways, each with its own
// client (the three members, from a random offset) and main watch, on a
// three-member cluster of processes with MariaDB. Each iteration is one
// Admin PUT of a route; it reports how long until each gateway's table
// holds it (p50 and p99 over all gateways and PUTs), and, measured before
// the PUTs, the members' CPU and resident memory while idle with the 200
// watches open.
func BenchmarkGateways200(b *testing.B) {
	const gateways = 200
	ps := testcluster.StartProcesses(b, 3, "--mysql-dsn", mysqltest.NewDatabase(b))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	newClient := func(seed int64) *Client {
		c, err := NewClient(ClientConfig{Endpoints: ps.Endpoints(), Seed: seed, MaxFails: 3, FailTimeout: 10 * time.Second, Timeout: 10 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return c
	}
	cli := newClient(1)
	if err := CheckVersions(ctx, cli); err != nil {
		b.Fatal(err)
	}
	if err := InitDir(ctx, cli); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	arrived := make([]map[int64]time.Time, gateways)
	for g := range gateways {
		arrived[g] = map[int64]time.Time{}
		d, err := StartDataPlane(ctx, DataPlaneConfig{Client: newClient(int64(100 + g)), OnApply: func(rev int64) {
			now := time.Now()
			mu.Lock()
			arrived[g][rev] = now
			mu.Unlock()
		}})
		if err != nil {
			b.Fatalf("gateway %d: %v", g, err)
		}
		b.Cleanup(d.Close)
	}

	cpu0, rss := membersUsage(b, ps)
	time.Sleep(10 * time.Second) // the idle window measured
	cpu1, _ := membersUsage(b, ps)
	idleCPU := (cpu1 - cpu0).Seconds() / 10 * 100 // over 10 s, in % of a core

	admin := NewAdmin(newClient(2))
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		got, err := admin.Put(ctx, "routes", "bench", map[string]any{"uri": "/bench", "desc": strconv.Itoa(i)}, 0)
		if err != nil || got.Status >= 300 {
			b.Fatalf("PUT: %+v %v", got, err)
		}
		// The PUT's answer has no revision; a GET (linearizable) has it.
		g, err := admin.Get(ctx, "routes", "bench")
		if err != nil || g.Status != 200 {
			b.Fatalf("GET: %+v %v", g, err)
		}
		rev := g.ModifiedIndex
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			n := 0
			for g := range gateways {
				if t, ok := arrived[g][rev]; ok {
					n++
					if t.After(start) {
						lat = append(lat, t.Sub(start))
					}
					delete(arrived[g], rev)
				}
			}
			mu.Unlock()
			if n > 0 && len(lat) >= (i+1)*gateways {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("PUT %d (revision %d) reached %d of %d gateways", i, rev, len(lat)-i*gateways, gateways)
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // pace: 10 PUTs/s, an Admin API's rate
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(idleCPU, "idle-cpu-%")
	b.ReportMetric(float64(rss)/(1<<20), "idle-rss-MiB")
}

// membersUsage returns the members' total CPU time and resident memory
// (bytes).
func membersUsage(b *testing.B, ps *testcluster.Procs) (time.Duration, int64) {
	var pids []int
	for i := range ps.Procs {
		pids = append(pids, ps.Pid(i))
	}
	cpu, rss, err := serverproc.Usage(pids...)
	if err != nil {
		b.Fatal(err)
	}
	return cpu, rss
}
