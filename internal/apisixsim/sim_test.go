package apisixsim

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/haproxytest"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// target is a server the suite runs against. etcd 3.4 is the reference:
// every test must pass there unchanged.
type target struct {
	name  string
	start func(t *testing.T) env
}

// env is a started target: the endpoints APISIX is configured with, and
// for a cluster, the cluster (to inject faults into).
type env struct {
	eps     []string
	cluster *testcluster.Cluster
}

func single(url string) env { return env{eps: []string{url}} }

var targets = []target{
	{"etcd3.4", func(t *testing.T) env { return single(difftest.StartEtcd(t)) }},
	{"etcdsql-sqlite", func(t *testing.T) env { return single(testserver.Start(t).URL) }},
	{"etcdsql-mariadb", func(t *testing.T) env {
		return single(testserver.Start(t, testserver.WithMySQL(mysqltest.NewDatabase(t))).URL)
	}},
	// Three members on MariaDB, APISIX configured with the three hosts.
	{"etcdsql-cluster-hosts", func(t *testing.T) env {
		c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.NewDatabase(t)})
		return env{eps: c.Endpoints(), cluster: c}
	}},
	// The same behind a real HAProxy in round-robin: APISIX has one host.
	{"etcdsql-cluster-haproxy", func(t *testing.T) env {
		c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.NewDatabase(t)})
		return env{eps: []string{haproxytest.Start(t, c.Endpoints())}, cluster: c}
	}},
}

// forEachTarget runs f as a subtest against a fresh server of each target.
func forEachTarget(t *testing.T, f func(t *testing.T, e env)) {
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			e := tg.start(t)
			f(t, e)
			checkNoSimGoroutines(t)
		})
	}
}

// twice lists each endpoint twice, as the suite's Admin clients are
// configured (round-robin with repeats).
func twice(eps []string) []string { return append(slices.Clone(eps), eps...) }

// checkNoSimGoroutines fails the test if a data-plane goroutine outlives
// its Close.
func checkNoSimGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	var stacks string
	for time.Now().Before(deadline) {
		buf := make([]byte, 1<<20)
		stacks = string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "apisixsim.(*DataPlane)") && !strings.Contains(stacks, "apisixsim.readLines") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("data-plane goroutines still running after Close:\n%s", stacks)
}

func newTestClient(t *testing.T, seed int64, maxFails int, endpoints ...string) *Client {
	t.Helper()
	c, err := NewClient(ClientConfig{Endpoints: endpoints, Seed: seed, MaxFails: maxFails, FailTimeout: 2 * time.Second, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func startDP(t *testing.T, c *Client, watchTimeout time.Duration) *DataPlane {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := StartDataPlane(ctx, DataPlaneConfig{Client: c, WatchTimeout: watchTimeout})
	if err != nil {
		t.Fatalf("start data plane: %v", err)
	}
	t.Cleanup(d.Close)
	return d
}

// apisixStart is "apisix start": version check and init_dir.
func apisixStart(t *testing.T, ctx context.Context, c *Client) {
	t.Helper()
	if err := CheckVersions(ctx, c); err != nil {
		t.Fatalf("version check: %v", err)
	}
	if err := InitDir(ctx, c); err != nil {
		t.Fatalf("init_dir: %v", err)
	}
}

// checkSim asserts what must hold of a simulator after any run: header
// revisions never went backwards, no full reload, nothing APISIX would log.
func checkSim(t *testing.T, name string, d *DataPlane) {
	t.Helper()
	revs := d.Revisions()
	for i := 1; i < len(revs); i++ {
		if revs[i] < revs[i-1] {
			t.Errorf("%s: header.revision went backwards: %d after %d (message %d of %d)", name, revs[i], revs[i-1], i, len(revs))
			break
		}
	}
	if n := d.Reloads(); n != 0 {
		t.Errorf("%s: %d full reloads, want 0", name, n)
	}
	if a := d.Anomalies(); len(a) > 0 {
		if len(a) > 20 {
			a = a[:20]
		}
		t.Errorf("%s: %d anomalies APISIX would hit, first ones:\n%s", name, len(d.Anomalies()), strings.Join(a, "\n"))
	}
}

// TestBlogScenario: init_dir, data plane started, Admin PUT route 1 (201),
// GET it (200), POST a second route, list both, and the data plane holds
// route 1 within 100 ms of the PUT returning.
func TestBlogScenario(t *testing.T) {
	forEachTarget(t, func(t *testing.T, e env) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cli := newTestClient(t, 1, 1, e.eps...)
		apisixStart(t, ctx, cli)
		dp := startDP(t, newTestClient(t, 2, 3, e.eps...), DefaultWatchTimeout)
		admin := NewAdmin(newTestClient(t, 3, 1, e.eps...))

		route := map[string]any{"uri": "/index.html", "upstream": map[string]any{"type": "roundrobin", "nodes": map[string]any{"127.0.0.1:1980": 1}}}
		put, err := admin.Put(ctx, "routes", "1", route, 0)
		putDone := time.Now()
		if err != nil || put.Status != 201 {
			t.Fatalf("PUT /routes/1: %+v %v, want 201 (MUST 16)", put, err)
		}
		var seen time.Duration
		for deadline := putDone.Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if _, ok := dp.Tables()["/routes"]["1"]; ok {
				seen = time.Since(putDone)
				break
			}
		}
		if seen == 0 {
			t.Fatalf("data plane never saw route 1; tables: %v", dp.Tables()["/routes"])
		}
		if seen > 100*time.Millisecond {
			t.Errorf("data plane saw route 1 %v after the PUT returned, want within 100ms", seen)
		}
		t.Logf("data plane saw route 1 %v after the PUT returned", seen)

		get, err := admin.Get(ctx, "routes", "1")
		if err != nil || get.Status != 200 {
			t.Fatalf("GET /routes/1: %+v %v", get, err)
		}
		if get.CreatedIndex == 0 || get.ModifiedIndex == 0 || get.Value.(map[string]any)["uri"] != "/index.html" {
			t.Errorf("GET /routes/1: %+v", get)
		}
		again, err := admin.Put(ctx, "routes", "1", route, 0)
		if err != nil || again.Status != 200 {
			t.Errorf("second PUT /routes/1: %+v %v, want 200 (MUST 16)", again, err)
		}
		post, err := admin.Post(ctx, "routes", map[string]any{"uri": "/two"}, 0)
		if err != nil || post.Status != 201 {
			t.Fatalf("POST /routes: %+v %v", post, err)
		}
		id2 := strings.TrimPrefix(post.Key, Prefix+"/routes/")
		if len(id2) != 20 {
			t.Errorf("POST id %q is not 20 digits", id2)
		}
		list, err := admin.List(ctx, "routes")
		if err != nil || list.Status != 200 {
			t.Fatalf("list routes: %+v %v", list, err)
		}
		var keys []string
		for _, it := range list.List {
			keys = append(keys, it.Key)
		}
		want := []string{Prefix + "/routes/1", Prefix + "/routes/" + id2}
		if !reflect.DeepEqual(keys, want) || list.Total != 2 {
			t.Errorf("list routes: keys %q total %d, want %q", keys, list.Total, want)
		}
		if g, _ := admin.Get(ctx, "routes", "2"); g.Status != 404 || g.Message != "Key not found" {
			t.Errorf("GET /routes/2: %+v, want 404 Key not found", g)
		}
		waitConverged(t, ctx, cli, map[string]*DataPlane{"dp": dp})
		checkSim(t, "dp", dp)
		dp.Close()
	})
}

// waitConverged reads the truth with one full range and waits until every
// simulator has reached its revision, then compares the tables.
func waitConverged(t *testing.T, ctx context.Context, c *Client, sims map[string]*DataPlane) {
	t.Helper()
	truth, rev, err := LoadTables(ctx, c)
	if err != nil {
		t.Fatalf("truth: %v", err)
	}
	for name, d := range sims {
		deadline := time.Now().Add(10 * time.Second)
		for d.Revision() < rev && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := d.Revision(); got < rev {
			t.Errorf("%s: reached revision %d, truth is at %d", name, got, rev)
			continue
		}
		got := d.Tables()
		if diff := diffTables(got, truth); diff != "" {
			t.Errorf("%s: tables differ from the truth at revision %d:\n%s", name, rev, diff)
		}
	}
}

func diffTables(got, want Tables) string {
	var out []string
	for dir, w := range want {
		g := got[dir]
		for id, wi := range w {
			gi, ok := g[id]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("%s/%s missing (want mod %d)", dir, id, wi.ModifiedIndex))
			case !reflect.DeepEqual(gi, wi):
				out = append(out, fmt.Sprintf("%s/%s: got mod %d %v, want mod %d %v", dir, id, gi.ModifiedIndex, gi.Value, wi.ModifiedIndex, wi.Value))
			}
		}
		for id, gi := range g {
			if _, ok := w[id]; !ok {
				out = append(out, fmt.Sprintf("%s/%s extra (mod %d)", dir, id, gi.ModifiedIndex))
			}
		}
	}
	for dir := range got {
		if _, ok := want[dir]; !ok {
			out = append(out, "extra resource "+dir)
		}
	}
	sort.Strings(out)
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("… %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}

// Randomized run parameters.
const (
	randomSeed    = 20240917
	randomWorkers = 4
	randomPhases  = 5
	opsPerPhase   = 250 // per worker: 4 × 5 × 250 = 5,000 operations
	phasePause    = 600 * time.Millisecond
)

// worker is one Admin client with its own keys and model of them.
type worker struct {
	id    int
	rng   *rand.Rand
	admin *Admin
	// model maps each key this worker wrote to its value as JSON.
	model map[string]string
	stats map[string]int
	// faults: the cluster is being crashed and partitioned, so an
	// operation may fail. A failed write may or may not have happened:
	// its key is uncertain until an answer tells (a GET, or a write that
	// succeeds).
	faults    bool
	uncertain map[string]bool
	postLost  map[string]bool // a POST to this resource failed: an unknown id may exist
	unknown   int             // operations that failed
	retried   int             // operations the client retried after a failure
}

// lost reports an operation that failed under faults; its key becomes
// uncertain. Without faults nothing may fail, and lost reports false.
func (w *worker) lost(k string, got AdminResult, err error) bool {
	if !w.faults || (err == nil && got.Status < 500) {
		return false
	}
	w.unknown++
	if k != "" {
		w.uncertain[k] = true
		delete(w.model, k)
	}
	return true
}

// learned records a key's state as an answer showed it.
func (w *worker) learned(k string, value any, exists bool) {
	delete(w.uncertain, k)
	if exists {
		w.model[k] = normalize(value)
	} else {
		delete(w.model, k)
	}
}

// retryAdmin retries an operation that failed under faults (for setup
// steps the run depends on), up to 20 times.
func retryAdmin(ctx context.Context, faults bool, op func() (AdminResult, error)) (AdminResult, error) {
	for try := 0; ; try++ {
		got, err := op()
		if !faults || (err == nil && got.Status < 500) || try == 20 || ctx.Err() != nil {
			return got, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var idSuffixes = []string{"1", "10", "1a", "100", "2", "R1", "r1", "3"}

func (w *worker) id2(prefix string) string {
	return fmt.Sprintf("w%d%s%s", w.id, prefix, idSuffixes[w.rng.Intn(len(idSuffixes))])
}

func normalize(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "!" + err.Error()
	}
	var x any
	_ = json.Unmarshal(b, &x)
	b, _ = json.Marshal(x)
	return string(b)
}

// step runs one random Admin operation and checks its answer against the
// model. It returns an error description or "".
func (w *worker) step(ctx context.Context) string {
	r := w.rng
	var res, id string
	switch p := r.Intn(100); {
	case p < 35:
		res, id = "routes", w.id2("-")
	case p < 50:
		res, id = "upstreams", w.id2("-u")
	case p < 65:
		res, id = "services", w.id2("-s")
	case p < 80:
		res, id = "consumers", w.id2("c")
	case p < 90:
		owner := fmt.Sprintf("w%dc%s", w.id, idSuffixes[r.Intn(len(idSuffixes))])
		if _, ok := w.model[key("consumers", owner)]; !ok {
			res, id = "consumers", owner
		} else {
			res, id = "consumers/"+owner+"/credentials", fmt.Sprintf("cred%d", r.Intn(3))
		}
	default:
		res, id = "plugin_metadata", fmt.Sprintf("w%d-plugin%d", w.id, r.Intn(4))
	}
	k := key(res, id)
	_, exists := w.model[k]
	value := map[string]any{"desc": fmt.Sprintf("v%d", r.Intn(1000000)), "labels": map[string]any{"w": fmt.Sprint(w.id)}}
	if res == "routes" {
		value["uri"] = "/" + id + "/*"
		value["upstream"] = map[string]any{"type": "roundrobin", "nodes": map[string]any{fmt.Sprintf("127.0.0.%d:80", r.Intn(200)+1): 1}}
	}
	// Under faults the client may have retried a call on another member
	// after a failure (as lua-resty-etcd does): a write may then have
	// happened twice, and its answer speaks of the second time.
	failures := w.admin.c.Failures()
	defer func() {
		if w.faults && w.admin.c.Failures() > failures {
			w.retried++
		}
	}()
	retried := func() bool { return w.faults && w.admin.c.Failures() > failures }
	unsure := w.uncertain[k]
	action := r.Intn(100)
	switch {
	case action < 40:
		w.stats["put"]++
		got, err := w.admin.Put(ctx, res, id, value, 0)
		if w.lost(k, got, err) {
			break
		}
		want := 201
		if exists {
			want = 200
		}
		if err != nil || got.Status != want && !((unsure || retried()) && (got.Status == 200 || got.Status == 201)) {
			return fmt.Sprintf("PUT %s: %d %v, want %d (MUST 16)", k, got.Status, err, want)
		}
		w.learned(k, got.Value, true)
	case action < 55:
		w.stats["get"]++
		got, err := w.admin.Get(ctx, res, id)
		if w.lost("", got, err) {
			break
		}
		if err != nil {
			return fmt.Sprintf("GET %s: %v", k, err)
		}
		if unsure && (got.Status == 200 || got.Status == 404) {
			w.learned(k, got.Value, got.Status == 200)
			break
		}
		if !exists {
			if got.Status != 404 {
				return fmt.Sprintf("GET %s: %d, want 404", k, got.Status)
			}
			break
		}
		if got.Status != 200 || normalize(got.Value) != w.model[k] {
			return fmt.Sprintf("GET %s: %d %s, want 200 %s", k, got.Status, normalize(got.Value), w.model[k])
		}
	case action < 70:
		w.stats["patch"]++
		got, err := w.admin.Patch(ctx, res, id, map[string]any{"desc": fmt.Sprintf("patched%d", r.Intn(1000))}, 0)
		if w.lost(k, got, err) {
			break
		}
		if err != nil {
			return fmt.Sprintf("PATCH %s: %v", k, err)
		}
		if (unsure || retried()) && (got.Status == 200 || got.Status == 404) {
			w.learned(k, got.Value, got.Status == 200)
			break
		}
		if !exists {
			if got.Status != 404 {
				return fmt.Sprintf("PATCH %s: %d, want 404", k, got.Status)
			}
			break
		}
		if got.Status != 200 {
			return fmt.Sprintf("PATCH %s: %d %s, want 200 (MUST 19)", k, got.Status, got.Message)
		}
		w.learned(k, got.Value, true)
	case action < 85:
		w.stats["delete"]++
		got, err := w.admin.Delete(ctx, res, id)
		lost := w.lost(k, got, err)
		if !lost {
			if err != nil {
				return fmt.Sprintf("DELETE %s: %v", k, err)
			}
			want := 404
			if exists {
				want = 200
			}
			if got.Status != want && !((unsure || retried()) && (got.Status == 200 || got.Status == 404)) {
				return fmt.Sprintf("DELETE %s: %d, want %d (MUST 21)", k, got.Status, want)
			}
			w.learned(k, nil, false)
		}
		if res == "consumers" {
			// Its credentials go with it (or, if the delete was lost,
			// may have).
			for _, mk := range slices.Concat(slices.Collect(maps.Keys(w.model)), slices.Collect(maps.Keys(w.uncertain))) {
				if strings.HasPrefix(mk, k+"/credentials/") {
					if lost {
						w.uncertain[mk] = true
						delete(w.model, mk)
					} else {
						w.learned(mk, nil, false)
					}
				}
			}
		}
	case action < 93 && (res == "routes" || res == "upstreams" || res == "services"):
		w.stats["post"]++
		got, err := w.admin.Post(ctx, res, value, 0)
		if w.lost("", got, err) {
			w.postLost[res] = true
			break
		}
		if err != nil || got.Status != 201 {
			return fmt.Sprintf("POST %s: %d %v", res, got.Status, err)
		}
		if retried() {
			w.postLost[res] = true // an earlier try may have created another
		}
		if _, dup := w.model[got.Key]; dup {
			return fmt.Sprintf("POST %s: id %s reused", res, got.Key)
		}
		w.learned(got.Key, got.Value, true)
	default:
		w.stats["list"]++
		top := strings.SplitN(res, "/", 2)[0]
		got, err := w.admin.List(ctx, top)
		if w.lost("", got, err) {
			break
		}
		if err != nil || got.Status != 200 {
			return fmt.Sprintf("list %s: %d %v", top, got.Status, err)
		}
		listed := map[string]string{}
		for _, it := range got.List {
			listed[it.Key] = normalize(it.Value)
		}
		mine := fmt.Sprintf("%s/%s/w%d", Prefix, top, w.id)
		for lk := range listed {
			if strings.HasPrefix(lk, mine) && !w.uncertain[lk] && !w.postLost[top] {
				if _, ok := w.model[lk]; !ok {
					return fmt.Sprintf("list %s: %s listed but deleted", top, lk)
				}
			}
		}
		for mk, mv := range w.model {
			if strings.HasPrefix(mk, Prefix+"/"+top+"/") && listed[mk] != mv {
				return fmt.Sprintf("list %s: %s = %q, want %q", top, mk, listed[mk], mv)
			}
		}
	}
	return ""
}

// TestRandomizedAdminRun: 5,000 seeded Admin operations by 4 workers in 5
// phases separated by short silences, a few ?ttl= routes that expire, two
// data planes through the whole run (one reconnecting after 300 ms of
// silence) and a third started mid-run. Every data plane must end equal to
// the truth, without a reload, without seeing revisions go backwards.
func TestRandomizedAdminRun(t *testing.T) {
	forEachTarget(t, func(t *testing.T, e env) {
		if e.cluster != nil && raceEnabled {
			t.Skip("the fault run on a cluster runs in the plain (non-race) pass of make test")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
		defer cancel()
		begin := time.Now()
		cli := newTestClient(t, randomSeed, 1, twice(e.eps)...)
		apisixStart(t, ctx, cli)
		sims := map[string]*DataPlane{
			"dp-50s":   startDP(t, newTestClient(t, randomSeed+1, 3, twice(e.eps)...), DefaultWatchTimeout),
			"dp-300ms": startDP(t, newTestClient(t, randomSeed+2, 3, twice(e.eps)...), 300*time.Millisecond),
		}
		faults := e.cluster != nil
		workers := make([]*worker, randomWorkers)
		for i := range workers {
			workers[i] = &worker{id: i, rng: rand.New(rand.NewSource(randomSeed + int64(i))),
				admin: NewAdmin(newTestClient(t, randomSeed+10+int64(i), 1, twice(e.eps)...)),
				model: map[string]string{}, stats: map[string]int{}, faults: faults, uncertain: map[string]bool{}, postLost: map[string]bool{}}
		}
		// On a cluster, the run goes on while the leader is crashed and
		// restarted twice and a follower is cut off for 10 s.
		nemesisDone := make(chan []string, 1)
		if faults {
			go func() { nemesisDone <- nemesis(ctx, t, e.cluster) }()
		} else {
			nemesisDone <- nil
		}
		ttlAdmin := NewAdmin(newTestClient(t, randomSeed+20, 1, e.eps...))
		var midSim *DataPlane
		var midErr error
		var midWG sync.WaitGroup
		ops := 0
		for phase := 0; phase < randomPhases; phase++ {
			if phase == 1 {
				for i, ttl := range []int{2, 3, 3} {
					got, err := retryAdmin(ctx, faults, func() (AdminResult, error) {
						return ttlAdmin.Put(ctx, "routes", fmt.Sprintf("ttl-%d", i), map[string]any{"uri": "/ttl"}, ttl)
					})
					// 201; 200 when an earlier try that failed had written it.
					if err != nil || got.Status != 201 && !(faults && got.Status == 200) {
						t.Fatalf("PUT ?ttl=%d: %+v %v", ttl, got, err)
					}
				}
				for i := range 3 {
					got, _ := retryAdmin(ctx, faults, func() (AdminResult, error) { return ttlAdmin.Get(ctx, "routes", fmt.Sprintf("ttl-%d", i)) })
					if got.Status != 200 {
						t.Errorf("GET /routes/ttl-%d right after PUT ?ttl=: %d", i, got.Status)
					}
				}
			}
			if phase == 2 {
				midWG.Add(1)
				go func() {
					defer midWG.Done()
					midSim, midErr = StartDataPlane(ctx, DataPlaneConfig{Client: newTestClient(t, randomSeed+3, 3, e.eps...), WatchTimeout: DefaultWatchTimeout})
				}()
			}
			var wg sync.WaitGroup
			errs := make([]string, len(workers))
			for i, w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; n < opsPerPhase && ctx.Err() == nil; n++ {
						if e := w.step(ctx); e != "" {
							errs[i] = e
							return
						}
					}
				}()
			}
			wg.Wait()
			ops += randomWorkers * opsPerPhase
			for i, e := range errs {
				if e != "" {
					t.Errorf("phase %d worker %d: %s", phase, i, e)
				}
			}
			if t.Failed() {
				break
			}
			time.Sleep(phasePause)
		}
		faultLog := <-nemesisDone
		midWG.Wait()
		if midErr != nil {
			t.Errorf("mid-run data plane: %v", midErr)
		} else if midSim != nil {
			t.Cleanup(midSim.Close)
			sims["dp-midrun"] = midSim
		}
		opsTime := time.Since(begin)
		// Wait for the ?ttl= routes to expire (MUST 40).
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			truth, _, err := LoadTables(ctx, cli)
			if err != nil {
				t.Fatalf("truth: %v", err)
			}
			if len(ttlKeys(truth)) == 0 {
				break
			}
		}
		waitConverged(t, ctx, cli, sims)
		truth, _, _ := LoadTables(ctx, cli)
		if k := ttlKeys(truth); len(k) > 0 {
			t.Errorf("?ttl= routes still present after 15 s: %v (MUST 40)", k)
		}
		stats := map[string]int{}
		for _, w := range workers {
			for k, v := range w.stats {
				stats[k] += v
			}
		}
		t.Logf("%d ops in %v (%.0f ops/s), total %v; ops %v; truth sizes routes=%d consumers=%d",
			ops, opsTime.Round(time.Millisecond), float64(ops)/opsTime.Seconds(), time.Since(begin).Round(time.Millisecond),
			stats, len(truth["/routes"]), len(truth["/consumers"]))
		if faults {
			unknown, retried := 0, 0
			for _, w := range workers {
				unknown += w.unknown
				retried += w.retried
			}
			t.Logf("faults: %s; %d Admin operations failed (outcome unknown), %d retried by the client on another member",
				strings.Join(faultLog, ", "), unknown, retried)
		}
		for name, d := range sims {
			checkSim(t, name, d)
			t.Logf("%s: %d watch messages, %d watch opens", name, len(d.Revisions()), d.WatchOpens())
		}
		if n := sims["dp-300ms"].WatchOpens(); n < 2 {
			t.Errorf("dp-300ms opened the watch %d times; the phase pauses should have made it reconnect", n)
		}
		for _, d := range sims {
			d.Close()
		}
	})
}

func ttlKeys(tb Tables) []string {
	var out []string
	for id := range tb["/routes"] {
		if strings.HasPrefix(id, "ttl-") {
			out = append(out, id)
		}
	}
	return out
}

// nemesis crashes and restarts the leader, cuts a follower off for 10 s,
// then crashes and restarts the leader again, and says what it did.
func nemesis(ctx context.Context, t *testing.T, c *testcluster.Cluster) []string {
	var log []string
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	crash := func() {
		l := c.Leader(15 * time.Second)
		c.Crash(l)
		pause(time.Second)
		c.Restart(l)
		log = append(log, fmt.Sprintf("leader %s crashed and restarted", c.Members[l].Name))
	}
	pause(time.Second)
	crash()
	pause(time.Second)
	f := (c.Leader(15*time.Second) + 1) % len(c.Members)
	c.Isolate(f)
	pause(10 * time.Second)
	c.Heal()
	log = append(log, fmt.Sprintf("follower %s cut off for 10 s", c.Members[f].Name))
	crash()
	return log
}

// TestRollingRestart: the members of a cluster are stopped (SIGTERM's
// path: leadership handed over first) and started again one at a time, as
// in an upgrade, while Admin writes go on. Neither side may notice: no
// Admin write fails, and the data planes end equal to the truth with no
// reload and no revision going backwards.
func TestRollingRestart(t *testing.T) {
	if raceEnabled {
		t.Skip("cluster fault run: runs in the plain (non-race) pass of make test")
	}
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.NewDatabase(t)})
	eps := c.Endpoints()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := newTestClient(t, 7, 1, eps...)
	apisixStart(t, ctx, cli)
	sims := map[string]*DataPlane{
		"dp-a": startDP(t, newTestClient(t, 8, 3, eps...), DefaultWatchTimeout),
		"dp-b": startDP(t, newTestClient(t, 9, 3, eps...), DefaultWatchTimeout),
	}
	admin := NewAdmin(newTestClient(t, 10, 1, twice(eps)...))
	stop := make(chan struct{})
	type tally struct{ ok, failed int }
	done := make(chan tally, 1)
	go func() {
		var n tally
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			got, err := admin.Put(ctx, "routes", fmt.Sprintf("roll-%d", i%40), map[string]any{"uri": "/roll", "desc": strconv.Itoa(i)}, 0)
			if err != nil || got.Status >= 300 {
				n.failed++
				if n.failed <= 3 {
					t.Logf("Admin write %d failed: %v %+v", i, err, got)
				}
				continue
			}
			n.ok++
		}
	}()
	// The pace of the rolling restart is the test: a second of writes
	// before each stop, half a second down, a second after the last.
	for i := range c.Members {
		time.Sleep(time.Second)
		c.Stop(i)
		time.Sleep(500 * time.Millisecond)
		c.Restart(i)
	}
	time.Sleep(time.Second)
	close(stop)
	n := <-done
	t.Logf("%d Admin writes succeeded, %d failed during the rolling restart", n.ok, n.failed)
	// Every member, the leader among them, stops gracefully once: a
	// leader hands over first, and no Admin write may fail (APISIX's
	// client would mark the members it tried unhealthy).
	if n.failed > 0 {
		t.Errorf("%d Admin writes failed during a graceful rolling restart", n.failed)
	}
	if n.ok < 100 {
		t.Fatalf("only %d Admin writes succeeded", n.ok)
	}
	waitConverged(t, ctx, cli, sims)
	for name, d := range sims {
		checkSim(t, name, d)
		d.Close()
	}
}
