package apisixsim

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/haproxytest"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	etcdsql "github.com/etcdsql/etcdsql/node"
)

// drainBound is what a drained watcher gets to be on another member,
// counted from the SIGTERM (issue 11, acceptance 5).
const drainBound = time.Second

// TestDrainMovesWatchers: three member processes on MariaDB behind the
// deployment's HAProxy configuration, 50 simulated APISIX gateways
// watching through it, six clientv3 watchers on the members themselves,
// and an Admin writer. Each member in turn, the one most gateways watch
// on first, gets SIGTERM: every watcher that was on it must have a new
// watch on another member within a second, the member must exit by
// itself, and in the end every watcher has every revision exactly once,
// in order, with no full reload and nothing APISIX would log.
func TestDrainMovesWatchers(t *testing.T) {
	if testing.Short() {
		t.Skip("processes, MariaDB and HAProxy")
	}
	if raceEnabled {
		t.Skip("a timing test: the race detector slows the simulated gateways tenfold; it runs in the plain pass")
	}
	const gateways, v3watchers = 50, 6
	ps := testcluster.StartProcesses(t, 3, "--mysql-dsn", mysqltest.NewDatabase(t), "--log-level", "info")
	lb := haproxytest.Start(t, ps.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := newTestClient(t, 1, 1, lb)
	apisixStart(t, ctx, cli)

	ws := newWatchers()
	var dps []*DataPlane
	for g := range gateways {
		_, d := startGateway(t, ctx, ws, lb, int64(100+g))
		dps = append(dps, d)
	}
	first := dps[0].Revision() + 1 // nothing was written since the loads
	wctx, stopWatch := context.WithCancel(ctx)
	var v3done []<-chan struct{}
	for k := range v3watchers {
		eps := ps.Endpoints()
		eps = append(eps[k%len(eps):], eps[:k%len(eps)]...)
		w := ws.add("clientv3 watcher " + strconv.Itoa(k))
		v3done = append(v3done, watchClientv3(t, wctx, w, testserver.NewClient(t, eps...), Prefix+"/", first))
	}
	defer func() {
		stopWatch()
		for _, d := range v3done {
			<-d
		}
	}()
	ids := map[string]int{}
	for i, p := range ps.Procs {
		ids[strconv.FormatUint(etcdsql.MemberID(p.Name), 10)] = i
	}
	ws.waitUntil(t, 20*time.Second, "every watcher has a watch", func() bool {
		for _, w := range ws.all {
			if _, ok := ids[w.member]; !ok {
				return false
			}
		}
		return true
	})

	wr := startWriter(ctx, NewAdmin(newTestClient(t, 2, 1, lb)), 10*time.Millisecond, 20000)
	var gwMoves, v3Moves []time.Duration
	drained := map[int]bool{}
	for range ps.Procs {
		victim := mostWatched(ws, ids, drained)
		drained[victim] = true
		ps.WaitStarted(victim, 30*time.Second)
		gw, v3 := drainOne(t, ps, ws, ids, victim)
		gwMoves, v3Moves = append(gwMoves, gw...), append(v3Moves, v3...)
		ps.Restart(victim)
	}
	wr.finish()
	failed, changed := wr.unexpectedFailures()
	if len(failed) > 0 {
		t.Errorf("%d of %d Admin writes failed: %v", len(failed), wr.writes, failed)
	}
	if changed > 0 {
		// The propose path answers a write whose entry was appended
		// but not known committed when leadership moved with "leader
		// changed" (etcd does too); the hand-over makes that rare, not
		// impossible.
		t.Logf("%d Admin writes were answered %q during a hand-over (%d refused after it by the client's fail_timeout)",
			changed, leaderChanged, len(wr.failures)-len(failed)-changed)
	}
	last := finalRevision(t, ctx, cli)
	ws.waitUntil(t, 20*time.Second, "every watcher has every revision", func() bool {
		for _, w := range ws.all {
			if len(w.revs) == 0 || w.revs[len(w.revs)-1] != last {
				return false
			}
		}
		return true
	})
	asked := ws.checkEvents(t, first, last)
	for i, d := range dps {
		checkSim(t, "gateway "+strconv.Itoa(i), d)
	}
	if len(v3Moves) == 0 {
		t.Error("no clientv3 watcher was on a drained member")
	}
	t.Logf("%d Admin writes (revisions %d..%d); %d revisions asked for again by new watches; gateways moved %d times: max %v, median %v; clientv3 watchers moved %d times: max %v, median %v",
		wr.writes, first, last, asked, len(gwMoves), maxOf(gwMoves), median(gwMoves), len(v3Moves), maxOf(v3Moves), median(v3Moves))
}

// mostWatched returns the member, among those not drained yet, that most
// watchers are on.
func mostWatched(ws *watchers, ids map[string]int, drained map[int]bool) int {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	count := map[int]int{}
	for _, w := range ws.all {
		count[ids[w.member]]++
	}
	best := -1
	for i := range len(ids) {
		if !drained[i] && (best < 0 || count[i] > count[best]) {
			best = i
		}
	}
	return best
}

// drainOne sends SIGTERM to member victim and returns, for the gateways
// and for the clientv3 watchers that were on it, how long after the
// signal each was on another member. It fails the test if one took longer
// than drainBound or the member did not exit by itself, with status 0.
func drainOne(t *testing.T, ps *testcluster.Procs, ws *watchers, ids map[string]int, victim int) (gw, v3 []time.Duration) {
	t.Helper()
	ws.mu.Lock()
	var on []*watcher
	for _, w := range ws.all {
		if ids[w.member] == victim {
			on = append(on, w)
		}
	}
	ws.mu.Unlock()
	start := time.Now()
	wait := ps.Terminate(victim)
	stopAsking := askProgress(on)
	defer stopAsking()
	ws.waitUntil(t, 15*time.Second, "every watcher of the drained member is on another one", func() bool {
		for _, w := range on {
			if ids[w.member] == victim || !w.since.After(start) {
				return false
			}
		}
		return true
	})
	ws.mu.Lock()
	for _, w := range on {
		d := w.since.Sub(start)
		if d > drainBound {
			t.Errorf("%s: on another member %v after SIGTERM to %s, want within %v", w.name, d, ps.Procs[victim].Name, drainBound)
		}
		if strings.HasPrefix(w.name, "gateway") {
			gw = append(gw, d)
		} else {
			v3 = append(v3, d)
		}
	}
	ws.mu.Unlock()
	err := wait()
	exited := time.Since(start)
	if err != nil {
		t.Errorf("%s after SIGTERM: %v, want exit status 0", ps.Procs[victim].Name, err)
	}
	t.Logf("SIGTERM to %s: %d gateways moved (max %v), %d clientv3 watchers moved (max %v); exited after %v",
		ps.Procs[victim].Name, len(gw), maxOf(gw), len(v3), maxOf(v3), exited.Round(time.Millisecond))
	return gw, v3
}

// askProgress asks the clientv3 watchers among on for progress
// notifications every 10 ms until stopped, so that each shows the member
// its watch is on as soon as it moved, not at the next event.
func askProgress(on []*watcher) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, w := range on {
				if w.progress != nil {
					w.progress() // a stream being reopened answers the next one
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

// finalRevision is the cluster's revision, read linearizably.
func finalRevision(t *testing.T, ctx context.Context, c *Client) int64 {
	t.Helper()
	rr, _, err := c.Range(ctx, Prefix+"/", rangeEnd(Prefix+"/"))
	if err != nil {
		t.Fatalf("final range: %v", err)
	}
	return rr.Header.Rev()
}

func maxOf(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds).Round(time.Millisecond)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}
