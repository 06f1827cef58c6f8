package main

import (
	"context"
	"fmt"
	"time"

	"github.com/etcdsql/etcdsql/internal/benchload"
)

// load is one load of the comparison.
type load struct {
	name    string
	about   string
	members int // 1, or 3 (MariaDB only on etcdsql's side)
	run     func(ctx context.Context, endpoints []string, quick bool) ([]figure, error)
}

// figure is one measured value; higher tells which direction is better.
type figure struct {
	name   string
	value  float64
	higher bool
}

// scale picks the full or the --quick size of a load.
func scale[T any](quick bool, full, short T) T {
	if quick {
		return short
	}
	return full
}

// closedLoad is a Load of workers for 5 s (half a second with --quick), at
// most 200,000 requests.
func closedLoad(endpoints []string, workers int, quick bool) benchload.Load {
	return benchload.Load{Endpoints: endpoints, Workers: workers, Ops: 200_000, Duration: scale(quick, 5*time.Second, time.Second/2)}
}

func throughput(label string, r benchload.Result) []figure {
	return []figure{
		{label + ", ops/s", r.OpsPerSec(), true},
		{label + ", p50 ms", benchload.Ms(r.Percentile(50)), false},
		{label + ", p99 ms", benchload.Ms(r.Percentile(99)), false},
	}
}

func putLoad(name string, members, clients int) load {
	label := fmt.Sprintf("put 256 B, %d clients", clients)
	if clients == 1 {
		label = "put 256 B, 1 client"
	}
	if members > 1 {
		label = fmt.Sprintf("%d members: %s", members, label)
	}
	return load{name, label, members, func(ctx context.Context, eps []string, quick bool) ([]figure, error) {
		r, err := benchload.Puts(ctx, closedLoad(eps, clients, quick))
		return throughput(label, r), err
	}}
}

func getLoad(name string, serializable bool) load {
	label := "point get, linearizable, 16 clients"
	if serializable {
		label = "point get, serializable, 16 clients"
	}
	return load{name, label, 1, func(ctx context.Context, eps []string, quick bool) ([]figure, error) {
		r, err := benchload.Gets(ctx, closedLoad(eps, 16, quick), serializable)
		return throughput(label, r)[:2], err
	}}
}

func watchLoad(name string, members, watchers, rate int) load {
	label := fmt.Sprintf("put → event, %d watchers, %d puts/s", watchers, rate)
	if members > 1 {
		label = fmt.Sprintf("%d members: put → event, %d x %d watchers, %d puts/s", members, members, watchers, rate)
	}
	return load{name, label, members, func(ctx context.Context, eps []string, quick bool) ([]figure, error) {
		puts := scale(quick, 5*rate, rate/2)
		ev, _, err := benchload.WatchLatency(ctx, benchload.WatchLoad{Endpoints: eps, Watchers: watchers, Puts: puts, Rate: rate})
		return []figure{
			{label + ", p50 ms", benchload.Ms(ev.Percentile(50)), false},
			{label + ", p99 ms", benchload.Ms(ev.Percentile(99)), false},
		}, err
	}}
}

func leaseLoad(name string, members int) load {
	about := "lease expiry, 100 leases of 2 s (20 with --quick), TTL → DELETE event"
	if members > 1 {
		about = fmt.Sprintf("%d members: %s", members, about)
	}
	return load{name, about, members, func(ctx context.Context, eps []string, quick bool) ([]figure, error) {
		leases := scale(quick, 100, 20)
		label := fmt.Sprintf("lease expiry, %d leases of 2 s, TTL → DELETE event", leases)
		if members > 1 {
			label = fmt.Sprintf("%d members: %s", members, label)
		}
		r, err := benchload.LeaseExpiry(ctx, benchload.LeaseLoad{Endpoints: eps, Leases: leases, TTL: 2 * time.Second, Spread: scale(quick, time.Second, time.Second/2)})
		return []figure{
			{label + ", p50 ms", benchload.Ms(r.Percentile(50)), false},
			{label + ", p99 ms", benchload.Ms(r.Percentile(99)), false},
			{label + ", max ms", benchload.Ms(r.Max()), false},
		}, err
	}}
}

func allLoads() []load {
	return []load{
		putLoad("put1", 1, 1),
		putLoad("put16", 1, 16),
		putLoad("put64", 1, 64),
		getLoad("get-lin", false),
		getLoad("get-ser", true),
		{"cas16", "txn compare-and-swap, 16 clients (each increments its own key on mod_revision)", 1,
			func(ctx context.Context, eps []string, quick bool) ([]figure, error) {
				r, err := benchload.CAS(ctx, closedLoad(eps, 16, quick))
				return throughput("txn compare-and-swap, 16 clients", r)[:1], err
			}},
		watchLoad("watch100", 1, 100, 200),
		watchLoad("watch1000", 1, 1000, 200),
		leaseLoad("lease", 1),
		{"apisix", "APISIX full load: 5,000 routes, 10 gateways' range of /apisix + watch at once", 1,
			func(ctx context.Context, eps []string, quick bool) ([]figure, error) {
				routes, gateways := scale(quick, 5000, 1000), scale(quick, 10, 3)
				r, err := benchload.FullLoad(ctx, benchload.FullLoadConfig{Endpoints: eps, Routes: routes, Gateways: gateways})
				return []figure{{fmt.Sprintf("APISIX full load, %d routes, %d gateways, ms until all loaded", routes, gateways), benchload.Ms(r.Elapsed), false}}, err
			}},
		putLoad("cluster-put16", 3, 16),
		watchLoad("cluster-watch", 3, 1000, 50),
		leaseLoad("cluster-lease", 3),
	}
}
