package apisixsim

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testpki"
	etcdsql "github.com/etcdsql/etcdsql/node"
)

// secureRun is a three-member cluster of processes on MariaDB serving its
// client port over https with client certificates required and
// authentication enabled, and what APISIX is configured with to reach it.
type secureRun struct {
	ps   *testcluster.Procs
	eps  []string
	etls *TLS
	ids  map[string]int // member_id → member index
	ws   *watchers

	mu      sync.Mutex
	clients map[string]*Client   // every simulated client, by role
	foreign map[string]int       // per member, calls served with another member's token
	logs    map[string]*eventLog // every gateway's events, by name
	asked   int                  // revisions gateways' new watches asked for again
}

// client returns an APISIX etcd client with etcd.user/password and
// etcd.tls over eps (round-robin), recorded under name.
func (r *secureRun) client(t *testing.T, name string, seed int64, maxFails int, eps []string) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Endpoints: eps, Seed: seed, MaxFails: maxFails, FailTimeout: 2 * time.Second,
		Timeout: 10 * time.Second, User: "apisix", Password: "apisixpw", TLS: r.etls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r.mu.Lock()
	r.clients[name] = c
	r.mu.Unlock()
	return c
}

// Killing the leader in the middle of the run, then starting it again.
const (
	killAt    = 2500 // Admin operations done when the leader is killed
	restartAt = 3500 // … and when it is started again
)

// TestSecureClusterRun (issue 15, acceptance 2): APISIX's whole life
// against three members listed as https:// hosts, with mutual TLS and
// authentication enabled the way an operator enables it with etcdctl:
// "apisix start" (authenticate, /version on every host, init_dir), at
// least five gateways (one reconnecting after 300 ms of silence, one
// started right after the kill), the Admin API's operations, then the
// 5,000-operation run with expiring ?ttl= routes, during which the leader
// is killed (SIGKILL) and later started again. Each client authenticates
// once, on one member, and sends its token round-robin to all three. In
// the end every member and every gateway equals the truth, every
// acknowledged Admin write is in it, no client was refused (no 401, no
// auth or permission error, on a call or a watch), and every gateway got
// every revision once, in order.
func TestSecureClusterRun(t *testing.T) {
	if testing.Short() {
		t.Skip("processes and MariaDB")
	}
	if raceEnabled {
		t.Skip("a fault run with timing bounds: it runs in the plain (non-race) pass of make test")
	}
	begin := time.Now()
	r := startSecure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	cli := r.client(t, "cli", randomSeed, 1, r.eps)
	apisixStart(t, ctx, cli)
	gws := r.startGateways(t, ctx)
	adminOperations(t, ctx, NewAdmin(r.client(t, "admin", randomSeed+9, 1, twice(r.eps))))

	workers := r.workers(t)
	ttlAdmin := NewAdmin(r.client(t, "admin ttl", randomSeed+20, 1, r.eps))
	run := &adminRun{workers: workers, killAt: make(chan struct{}), restartAt: make(chan struct{}), done: make(chan struct{})}
	runStart := time.Now()
	go run.phases(t, ctx, func(phase int) {
		if phase == 1 {
			putTTLRoutes(t, ctx, ttlAdmin)
		}
	})
	k := r.killLeader(t, ctx, run, gws)
	<-run.done
	runTime := run.took.Sub(runStart)
	if t.Failed() {
		return
	}
	r.finalChecks(t, ctx, cli, gws, workers)
	t.Logf("whole run %v; %d Admin operations in %v (%.0f ops/s); longest time without a successful Admin operation %v",
		time.Since(begin).Round(time.Millisecond), run.ops.Load(), runTime.Round(time.Millisecond),
		float64(run.ops.Load())/runTime.Seconds(), run.longestGap().Round(time.Millisecond))
	t.Logf("kill: %s", k)
	r.report(t, gws, workers)
	t.Logf("%d revisions asked for again by gateways' new watches", r.asked)
}

// startGateways starts four gateways (one reconnecting after 300 ms of
// silence), then more until at least two watch on the leader, so that its
// kill moves them (each picks a member round-robin from a random offset).
func (r *secureRun) startGateways(t *testing.T, ctx context.Context) map[string]*DataPlane {
	t.Helper()
	gws := map[string]*DataPlane{}
	for i, wt := range []time.Duration{DefaultWatchTimeout, DefaultWatchTimeout, DefaultWatchTimeout, 300 * time.Millisecond} {
		name := fmt.Sprintf("gateway %d (watch timeout %v)", i, wt)
		gws[name] = r.gateway(t, ctx, name, randomSeed+1+int64(i), wt)
	}
	r.waitWatching(t)
	for leader, seed := r.leader(t, ctx, nil), int64(0); len(r.watchingOn(leader)) < 2 && seed < 10; seed++ {
		name := fmt.Sprintf("gateway %d (watch timeout 50s)", len(gws))
		gws[name] = r.gateway(t, ctx, name, randomSeed+100+seed, DefaultWatchTimeout)
		r.waitWatching(t)
	}
	return gws
}

// workers are the run's Admin workers, each with its own client; an
// operation may fail while the leader is down (faults).
func (r *secureRun) workers(t *testing.T) []*worker {
	workers := make([]*worker, randomWorkers)
	for i := range workers {
		workers[i] = &worker{id: i, rng: rand.New(rand.NewSource(randomSeed + int64(i))),
			admin: NewAdmin(r.client(t, "admin worker "+strconv.Itoa(i), randomSeed+10+int64(i), 1, twice(r.eps))),
			model: map[string]string{}, stats: map[string]int{}, faults: true, uncertain: map[string]bool{}, postLost: map[string]bool{}}
	}
	return workers
}

// adminOperations is the Admin API's everyday sequence: PUT (201, then
// 200), GET, POST (a 20-digit id), list, PATCH, DELETE, GET of what is gone.
func adminOperations(t *testing.T, ctx context.Context, a *Admin) {
	t.Helper()
	route := map[string]any{"uri": "/secure", "upstream": map[string]any{"type": "roundrobin", "nodes": map[string]any{"127.0.0.1:1980": 1}}}
	for _, want := range []int{201, 200} {
		if got, err := a.Put(ctx, "routes", "secure", route, 0); err != nil || got.Status != want {
			t.Fatalf("PUT /routes/secure: %+v %v, want %d", got, err, want)
		}
	}
	if got, err := a.Get(ctx, "routes", "secure"); err != nil || got.Status != 200 || got.Value.(map[string]any)["uri"] != "/secure" {
		t.Fatalf("GET /routes/secure: %+v %v", got, err)
	}
	post, err := a.Post(ctx, "routes", map[string]any{"uri": "/posted"}, 0)
	id := strings.TrimPrefix(post.Key, Prefix+"/routes/")
	if err != nil || post.Status != 201 || len(id) != 20 {
		t.Fatalf("POST /routes: %+v %v", post, err)
	}
	if got, err := a.List(ctx, "routes"); err != nil || got.Status != 200 || got.Total != 2 {
		t.Fatalf("list routes: %+v %v, want 2 routes", got, err)
	}
	if got, err := a.Patch(ctx, "routes", "secure", map[string]any{"desc": "patched"}, 0); err != nil || got.Status != 200 {
		t.Fatalf("PATCH /routes/secure: %+v %v", got, err)
	}
	if got, err := a.Delete(ctx, "routes", id); err != nil || got.Status != 200 {
		t.Fatalf("DELETE /routes/%s: %+v %v", id, got, err)
	}
	if got, _ := a.Get(ctx, "routes", id); got.Status != 404 {
		t.Fatalf("GET /routes/%s after DELETE: %+v, want 404", id, got)
	}
}

// putTTLRoutes writes three routes with ?ttl= of 2 and 3 s.
func putTTLRoutes(t *testing.T, ctx context.Context, a *Admin) {
	for i, ttl := range []int{2, 3, 3} {
		got, err := retryAdmin(ctx, true, func() (AdminResult, error) {
			return a.Put(ctx, "routes", fmt.Sprintf("ttl-%d", i), map[string]any{"uri": "/ttl"}, ttl)
		})
		if err != nil || got.Status != 201 && got.Status != 200 {
			t.Errorf("PUT ?ttl=%d: %+v %v", ttl, got, err)
		}
	}
}

// adminRun is the 5,000-operation run: randomWorkers workers, each
// randomPhases × opsPerPhase operations, with pauses between phases.
type adminRun struct {
	workers   []*worker
	ops       atomic.Int64
	killAt    chan struct{} // closed once killAt operations are done
	restartAt chan struct{} // closed once restartAt operations are done
	done      chan struct{} // closed when the run is over, at took
	took      time.Time

	mu          sync.Mutex
	lastSuccess time.Time
	gap         time.Duration // longest time between two successful operations
}

// phases runs the phases, calling before(phase) ahead of each.
func (a *adminRun) phases(t *testing.T, ctx context.Context, before func(phase int)) {
	defer close(a.done)
	defer func() { a.took = time.Now() }()
	a.mu.Lock()
	a.lastSuccess = time.Now()
	a.mu.Unlock()
	for phase := 0; phase < randomPhases; phase++ {
		before(phase)
		var wg sync.WaitGroup
		errs := make([]string, len(a.workers))
		for i, w := range a.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < opsPerPhase && ctx.Err() == nil; n++ {
					failed := w.unknown
					if e := w.step(ctx); e != "" {
						errs[i] = e
						return
					}
					a.count(w.unknown == failed)
				}
			}()
		}
		wg.Wait()
		for i, e := range errs {
			if e != "" {
				t.Errorf("phase %d worker %d: %s", phase, i, e)
			}
		}
		if t.Failed() || ctx.Err() != nil {
			return
		}
		if phase < randomPhases-1 {
			time.Sleep(phasePause) // the silence the 300 ms gateway reconnects in
		}
	}
}

// count counts one operation, and its success.
func (a *adminRun) count(ok bool) {
	switch a.ops.Add(1) {
	case killAt:
		close(a.killAt)
	case restartAt:
		close(a.restartAt)
	}
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	a.gap = max(a.gap, now.Sub(a.lastSuccess))
	a.lastSuccess = now
}

func (a *adminRun) longestGap() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gap
}

// startSecure starts the cluster and enables authentication on it.
func startSecure(t *testing.T) *secureRun {
	t.Helper()
	ca := testpki.NewCA(t, "etcd")
	member, apisix := ca.Issue(t, "member"), ca.Issue(t, "apisix")
	r := &secureRun{etls: &TLS{CertFile: apisix.CertFile, KeyFile: apisix.KeyFile, TrustedCAFile: ca.CertFile},
		ids: map[string]int{}, ws: newWatchers(), clients: map[string]*Client{}, logs: map[string]*eventLog{}}
	r.ps = testcluster.StartTLSProcesses(t, 3, testcluster.ClientTLS{CertFile: member.CertFile, KeyFile: member.KeyFile,
		TrustedCAFile: ca.CertFile, ClientCertAuth: true, Probe: r.probe()},
		"--mysql-dsn", mysqltest.NewDatabase(t), "--log-level", "info")
	r.eps = r.ps.Endpoints()
	for i, p := range r.ps.Procs {
		r.ids[strconv.FormatUint(etcdsql.MemberID(p.Name), 10)] = i
	}
	enableAuthWithEtcdctl(t, r.eps, ca.CertFile, apisix)
	return r
}
