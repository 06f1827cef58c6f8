package apisixsim

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A watcher of the drain test: a simulated APISIX gateway or a clientv3
// watch. It records which member its watch is on, since when, and every
// event's mod_revision in the order received.
type watcher struct {
	name string
	w    *watchers
	// progress asks a clientv3 watch for a progress notification, which
	// shows the member it is on without waiting for an event; nil for a
	// gateway (APISIX never asks).
	progress func() error

	// Guarded by w.mu.
	member string    // member_id of the member the watch is on
	since  time.Time // when the watch got there
	revs   []int64   // events' mod_revisions, in order, and watch starts
}

// A watch's start_revision in a watcher's revs: -start.

// watchers are all the watchers of a test, with one lock and one change
// signal, so that the test waits for a condition over all of them.
type watchers struct {
	mu      sync.Mutex
	all     []*watcher
	changed chan struct{} // gets a value after every change
}

func newWatchers() *watchers { return &watchers{changed: make(chan struct{}, 1)} }

func (ws *watchers) add(name string) *watcher {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	w := &watcher{name: name, w: ws}
	ws.all = append(ws.all, w)
	return w
}

func (ws *watchers) notify() {
	select {
	case ws.changed <- struct{}{}:
	default:
	}
}

// created records that w opened a new watch, on member, from start.
func (w *watcher) created(member string, start int64) {
	w.w.mu.Lock()
	w.revs = append(w.revs, -start)
	w.w.mu.Unlock()
	w.on(member)
}

// on records that w's watch is on member, from now on.
func (w *watcher) on(member string) {
	w.w.mu.Lock()
	if member != w.member {
		w.member, w.since = member, time.Now()
	}
	w.w.mu.Unlock()
	w.w.notify()
}

func (w *watcher) event(rev int64) {
	w.w.mu.Lock()
	w.revs = append(w.revs, rev)
	w.w.mu.Unlock()
	w.w.notify()
}

// waitUntil waits until cond (called under the lock) holds, or fails the
// test after timeout.
func (ws *watchers) waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ws.mu.Lock()
		ok := cond()
		ws.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ws.changed:
		case <-deadline.C:
			t.Fatalf("after %v: %s", timeout, what)
		}
	}
}

// startGateway starts one simulated gateway through the load balancer
// lb, as APISIX's sync client is configured (max_fails 3, fail_timeout
// 10 s).
func startGateway(t *testing.T, ctx context.Context, ws *watchers, lb string, seed int64) (*watcher, *DataPlane) {
	t.Helper()
	w := ws.add("gateway " + strconv.FormatInt(seed, 10))
	c, err := NewClient(ClientConfig{Endpoints: []string{lb}, Seed: seed, MaxFails: 3, FailTimeout: DefaultFailTimeout, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	d, err := StartDataPlane(ctx, DataPlaneConfig{Client: c, OnCreated: w.created, OnEvents: func(_ int, _, _ int64, evs []Event) {
		for _, ev := range evs {
			w.event(ev.ModRevision)
		}
	}})
	if err != nil {
		t.Fatalf("%s: %v", w.name, err)
	}
	t.Cleanup(d.Close)
	return w, d
}

// watchClientv3 watches prefix from rev on cl until ctx ends, recording
// each response's member and events. A watch that ends or is cancelled
// before ctx fails the test.
func watchClientv3(t *testing.T, ctx context.Context, w *watcher, cl *clientv3.Client, prefix string, rev int64) <-chan struct{} {
	done := make(chan struct{})
	ctx = clientv3.WithRequireLeader(ctx)
	w.progress = func() error { return cl.RequestProgress(ctx) }
	wch := cl.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithCreatedNotify())
	go func() {
		defer close(done)
		for resp := range wch {
			if err := resp.Err(); err != nil || resp.Canceled {
				if ctx.Err() == nil {
					t.Errorf("%s: watch ended: %v (canceled %v)", w.name, err, resp.Canceled)
				}
				return
			}
			w.on(strconv.FormatUint(resp.Header.MemberId, 10))
			for _, ev := range resp.Events {
				w.event(ev.Kv.ModRevision)
			}
		}
		if ctx.Err() == nil {
			t.Errorf("%s: watch channel closed", w.name)
		}
	}()
	return done
}

// checkEvents asserts that every watcher received each revision from
// first to last, in order, each exactly once from the watch that asked for
// it: nothing lost, duplicated or reordered. A new watch may ask again
// for the last revision its client had (APISIX keeps its watch revision
// at a message's revision, not one past it, when it already was there);
// those re-requests are counted and returned.
func (ws *watchers) checkEvents(t *testing.T, first, last int64) (asked int) {
	t.Helper()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for _, w := range ws.all {
		n, err := consecutive(w.revs, first, last)
		if err != nil {
			t.Errorf("%s: %v", w.name, err)
		}
		asked += n
	}
	return asked
}

func consecutive(revs []int64, first, last int64) (asked int, err error) {
	want := first
	for i, r := range revs {
		if r < 0 { // a new watch, from -r
			if -r > want {
				return asked, fmt.Errorf("a watch from %d after revision %d: revisions lost", -r, want-1)
			}
			asked += int(want - -r)
			want = -r
			continue
		}
		if r != want {
			return asked, fmt.Errorf("event %d has revision %d, want %d (lost, duplicated or reordered)", i, r, want)
		}
		want++
	}
	if want != last+1 {
		return asked, fmt.Errorf("events up to revision %d, want up to %d", want-1, last)
	}
	return asked, nil
}

// writer puts routes through the Admin API until stopped, as an operator's
// changes during a rolling restart; it keeps the writes that failed.
type writer struct {
	stop     chan struct{}
	done     chan struct{}
	writes   int
	failures []string
}

func startWriter(ctx context.Context, a *Admin, every time.Duration, maxWrites int) *writer {
	wr := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(wr.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; i < maxWrites; i++ {
			select {
			case <-wr.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			res, err := a.Put(ctx, "routes", "w"+strconv.Itoa(i%20), map[string]any{"uri": "/w", "desc": strconv.Itoa(i)}, 0)
			wr.writes++
			if err != nil || res.Status >= 300 {
				wr.failures = append(wr.failures, fmt.Sprintf("write %d at %s: status %d %v", i, time.Now().Format("15:04:05.000"), res.Status, err))
			}
		}
	}()
	return wr
}

// finish stops the writer and waits for it.
func (wr *writer) finish() {
	close(wr.stop)
	<-wr.done
}

// leaderChanged is etcd's answer to a write in flight when leadership
// moved before it committed: its outcome is unknown, and the client
// (APISIX's Admin API) reports an error.
const leaderChanged = "etcdserver: leader changed"

// unexpectedFailures returns the failed writes other than those answered
// "leader changed" and those refused by the client for the fail_timeout
// that followed one (lua-resty-etcd marks the endpoint unhealthy on a 5xx),
// and how many were answered "leader changed".
func (wr *writer) unexpectedFailures() (other []string, changed int) {
	after := false
	for _, f := range wr.failures {
		switch {
		case strings.Contains(f, leaderChanged):
			changed++
			after = true
		case after && strings.Contains(f, ErrNoHealthyEndpoint.Error()):
		default:
			after = false
			other = append(other, f)
		}
	}
	return other, changed
}
