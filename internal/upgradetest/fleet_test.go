package upgradetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
)

// maxGatewayErrors bounds the errors one gateway keeps.
const maxGatewayErrors = 20

// delivered is an event a gateway saw for the first time.
type delivered struct {
	ev apisixsim.Event
	at time.Time
}

// gateway is one simulated APISIX data plane and what it was sent. It
// checks each watch as messages arrive: within one watch, revisions only
// grow (a revision repeated in a later message is a duplicate); a watch
// never sends an event below its start_revision. Events at or below the
// highest revision seen so far are replays a reopened watch asked for (its
// start_revision was at or below them); the others are new and kept, in
// order, for the comparison with the history.
type gateway struct {
	name string
	via  string // "haproxy" or "hosts"
	dp   *apisixsim.DataPlane
	cli  *apisixsim.Client

	mu        sync.Mutex
	base      int64 // revision of the full load (first watch's start - 1)
	watch     int   // the watch the last message came on
	lastRev   int64 // highest revision on that watch
	highWater int64 // highest revision ever seen
	fresh     []delivered
	replayed  int
	errs      []string
}

func (g *gateway) errorf(format string, args ...any) {
	if len(g.errs) < maxGatewayErrors {
		g.errs = append(g.errs, fmt.Sprintf(format, args...))
	}
}

// onEvents is the data plane's OnEvents hook.
func (g *gateway) onEvents(watch int, start, rev int64, evs []apisixsim.Event) {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.base == 0 && g.highWater == 0 {
		g.base, g.highWater = start-1, start-1
	}
	if watch != g.watch {
		g.watch, g.lastRev = watch, 0
	}
	msgMax := g.lastRev
	for _, e := range evs {
		r := e.ModRevision
		switch {
		case r < start:
			g.errorf("watch %d from %d sent %s@%d, below its start revision", watch, start, e.Key, r)
		case r < g.lastRev:
			g.errorf("watch %d reordered: %s@%d after revision %d", watch, e.Key, r, g.lastRev)
		case r == g.lastRev:
			g.errorf("watch %d duplicated revision %d (%s) in a later message", watch, r, e.Key)
		}
		if r > msgMax {
			msgMax = r
		}
		if r <= g.highWater {
			g.replayed++
			continue
		}
		g.fresh = append(g.fresh, delivered{ev: e, at: now})
	}
	g.lastRev = msgMax
	if msgMax > g.highWater {
		g.highWater = msgMax
	}
}

// fleet is the gateways of the test.
type fleet struct {
	gws []*gateway
}

// startFleet starts n gateways: the first half through the load balancer
// (one etcd host, as deploy/compose configures APISIX), the other half
// with every member as a host (APISIX round-robins them itself). Each
// makes its full load before this returns, so all start from the same
// revision. They stop when the test ends.
func startFleet(t *testing.T, ctx context.Context, n int, lb string, hosts []string) *fleet {
	t.Helper()
	f := &fleet{gws: make([]*gateway, n)}
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		g := &gateway{name: fmt.Sprintf("gw%03d", i), via: "haproxy"}
		eps := []string{lb}
		if i >= n/2 {
			g.via, eps = "hosts", hosts
		}
		f.gws[i] = g
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = g.start(ctx, eps, int64(i))
		}()
	}
	wg.Wait()
	t.Cleanup(f.close)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", f.gws[i].name, err)
		}
	}
	return f
}

func (g *gateway) start(ctx context.Context, eps []string, seed int64) error {
	cli, err := apisixsim.NewClient(apisixsim.ClientConfig{Endpoints: eps, Seed: seed, MaxFails: 3})
	if err != nil {
		return err
	}
	dp, err := apisixsim.StartDataPlane(ctx, apisixsim.DataPlaneConfig{Client: cli, OnEvents: g.onEvents})
	if err != nil {
		cli.Close()
		return err
	}
	g.mu.Lock()
	g.dp, g.cli = dp, cli
	g.mu.Unlock()
	return nil
}

// close stops every data plane (idempotent).
func (f *fleet) close() {
	var wg sync.WaitGroup
	for _, g := range f.gws {
		g.mu.Lock()
		dp, cli := g.dp, g.cli
		g.dp = nil
		g.mu.Unlock()
		if dp != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				dp.Close()
				cli.Close()
			}()
		}
	}
	wg.Wait()
}

// dataPlane returns g's data plane (nil once closed).
func (g *gateway) dataPlane() *apisixsim.DataPlane {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dp
}
