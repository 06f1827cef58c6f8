package apisixsim

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testserver"
	etcdsql "github.com/etcdsql/etcdsql/node"
)

// killReport says how the kill of the leader was absorbed.
type killReport struct {
	victim     string
	elected    time.Duration // from the kill to a new leader
	moved      []time.Duration
	restarted  time.Duration // from the kill to the member serving again
	opsDown    int64         // Admin operations done while it was down
	midrunLoad time.Duration // the full load of the gateway started then
}

func (k killReport) String() string {
	return fmt.Sprintf("leader %s killed (SIGKILL) after %d Admin operations; new leader after %v; %d gateways that watched on it "+
		"watched on another member after at most %v; a gateway started right after the kill had its full load (which waits for a leader) after %v; %s served again after %v (%d Admin operations meanwhile)",
		k.victim, killAt, k.elected.Round(time.Millisecond), len(k.moved), maxOf(k.moved), k.midrunLoad.Round(time.Millisecond),
		k.victim, k.restarted.Round(time.Millisecond), k.opsDown)
}

// killLeader waits for killAt operations, kills the leader, starts a
// gateway while the others elect a new one, and starts the member again
// once restartAt operations are done.
func (r *secureRun) killLeader(t *testing.T, ctx context.Context, run *adminRun, gws map[string]*DataPlane) killReport {
	select {
	case <-run.killAt:
	case <-run.done:
		t.Errorf("the run ended after %d operations, before the kill", run.ops.Load())
		return killReport{}
	}
	victim := r.leader(t, ctx, nil)
	var k killReport
	k.victim = r.ps.Procs[victim].Name
	t.Logf("killing leader %s after %d Admin operations", k.victim, run.ops.Load())
	on := r.watchingOn(victim)
	start := time.Now()
	r.ps.Kill(victim)
	opsAtKill := run.ops.Load()
	midrun := fmt.Sprintf("gateway %d (started right after the kill)", len(gws))
	gws[midrun] = r.gateway(t, ctx, midrun, randomSeed+5, DefaultWatchTimeout)
	k.midrunLoad = time.Since(start)
	r.leader(t, ctx, []int{victim})
	k.elected = time.Since(start)
	r.ws.waitUntil(t, 30*time.Second, "every gateway that watched on the killed leader watches on another member", func() bool {
		for _, w := range on {
			if r.ids[w.member] == victim || !w.since.After(start) {
				return false
			}
		}
		return true
	})
	r.ws.mu.Lock()
	for _, w := range on {
		k.moved = append(k.moved, w.since.Sub(start))
	}
	r.ws.mu.Unlock()
	select {
	case <-run.restartAt:
	case <-run.done:
		t.Errorf("the run ended after %d operations, before the restart", run.ops.Load())
		return k
	}
	r.ps.Restart(victim)
	k.restarted = time.Since(start)
	k.opsDown = run.ops.Load() - opsAtKill
	return k
}

// waitWatching waits until every gateway has a watch.
func (r *secureRun) waitWatching(t *testing.T) {
	t.Helper()
	r.ws.waitUntil(t, 20*time.Second, "every gateway has a watch", func() bool {
		for _, w := range r.ws.all {
			if _, ok := r.ids[w.member]; !ok {
				return false
			}
		}
		return true
	})
}

// watchingOn returns the watchers whose watch is on member i.
func (r *secureRun) watchingOn(i int) []*watcher {
	r.ws.mu.Lock()
	defer r.ws.mu.Unlock()
	var on []*watcher
	for _, w := range r.ws.all {
		if r.ids[w.member] == i {
			on = append(on, w)
		}
	}
	return on
}

// leader returns the index of the member the others (all but skip) see
// as leader, waiting for one.
func (r *secureRun) leader(t *testing.T, ctx context.Context, skip []int) int {
	t.Helper()
	cl := testserver.NewTLSClient(t, r.probe(), r.eps...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for i, ep := range r.eps {
			if slices.Contains(skip, i) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cl.Status(sctx, ep)
			cancel()
			if err != nil || st.Leader == 0 {
				continue
			}
			for j, p := range r.ps.Procs {
				if etcdsql.MemberID(p.Name) == st.Leader && !slices.Contains(skip, j) {
					return j
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader among the members but %v after 30 s", skip)
	return -1
}

// probe is the client TLS configuration of the harness's own clients:
// APISIX's certificate and CA.
func (r *secureRun) probe() *tls.Config {
	cfg, err := r.etls.config()
	if err != nil {
		panic(err)
	}
	return cfg
}
