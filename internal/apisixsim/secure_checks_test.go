package apisixsim

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testpki"
)

// enableAuthWithEtcdctl is what an operator runs (docs/operations.md,
// "Securing a cluster end to end") with etcd's etcdctl over mutual TLS:
// root, a role that reads and writes APISIX's prefix, the apisix user,
// then auth enable.
func enableAuthWithEtcdctl(t *testing.T, eps []string, caFile string, leaf *testpki.Leaf) {
	t.Helper()
	bin, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Fatalf("etcdctl is not installed (apt-get install etcd-client): %v", err)
	}
	base := []string{"--endpoints=" + strings.Join(eps, ","), "--cacert=" + caFile, "--cert=" + leaf.CertFile,
		"--key=" + leaf.KeyFile, "--command-timeout=10s"}
	// The permission is on the prefix APISIX reads at start, /apisix: its
	// full load is a range of [/apisix, /apisiy), which a grant of
	// /apisix/ alone does not cover (etcd refuses it).
	for _, args := range [][]string{
		{"user", "add", "root:rootpw"},
		{"user", "grant-role", "root", "root"},
		{"role", "add", "apisix"},
		{"role", "grant-permission", "apisix", "--prefix=true", "readwrite", Prefix},
		{"user", "add", "apisix:apisixpw"},
		{"user", "grant-role", "apisix", "apisix"},
		{"auth", "enable"},
		{"--user=root:rootpw", "auth", "status"},
	} {
		cmd := exec.Command(bin, append(slices.Clone(base), args...)...)
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// gateway starts one simulated APISIX gateway (its sync client: max_fails
// 3), recording its watches and events. A gateway started while the
// cluster has no leader retries its full load, as APISIX's sync does.
func (r *secureRun) gateway(t *testing.T, ctx context.Context, name string, seed int64, watchTimeout time.Duration) *DataPlane {
	t.Helper()
	w := r.ws.add(name)
	c := r.client(t, name, seed, 3, r.eps)
	log := &eventLog{}
	r.mu.Lock()
	r.logs[name] = log
	r.mu.Unlock()
	cfg := DataPlaneConfig{Client: c, WatchTimeout: watchTimeout,
		OnCreated: func(member string, start int64) {
			log.add(Event{ModRevision: -start})
			w.on(member)
		},
		OnEvents: func(_ int, _, _ int64, evs []Event) { log.add(evs...) }}
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := StartDataPlane(ctx, cfg)
		if err == nil {
			t.Cleanup(d.Close)
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", name, err)
		}
		time.Sleep(errorPause)
	}
}

// finalChecks: the ?ttl= routes expired; every gateway, and every member
// read alone, equals the truth; the truth holds every acknowledged write;
// no client was refused; every gateway got every revision once, in
// order.
func (r *secureRun) finalChecks(t *testing.T, ctx context.Context, cli *Client, gws map[string]*DataPlane, workers []*worker) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		truth, _, err := LoadTables(ctx, cli)
		if err != nil {
			t.Fatalf("truth: %v", err)
		}
		if len(ttlKeys(truth)) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("?ttl= routes still present after 15 s: %v (MUST 40)", ttlKeys(truth))
		}
	}
	waitConverged(t, ctx, cli, gws)
	truth, rev, err := LoadTables(ctx, cli)
	if err != nil {
		t.Fatalf("truth: %v", err)
	}
	for i, ep := range r.eps {
		got, grev, err := LoadTables(ctx, r.client(t, "member "+r.ps.Procs[i].Name+" alone", int64(100+i), 1, []string{ep}))
		if err != nil {
			t.Errorf("full load from %s alone: %v", ep, err)
		} else if diff := diffTables(got, truth); diff != "" || grev != rev {
			t.Errorf("%s alone at revision %d differs from the truth at %d:\n%s", ep, grev, rev, diff)
		}
	}
	checkModels(t, truth, workers)
	r.foreign = r.checkReplies(t)
	r.asked = r.checkEvents(t, rev)
	for name, d := range gws {
		checkSim(t, name, d)
	}
}

var ownerRE = regexp.MustCompile(`^` + Prefix + `/[a-z_]+/w(\d)`)

// checkModels: every key a worker knows (its write was acknowledged, or a
// later answer showed it) holds what the worker knows, and every key of a
// worker in the truth is known to it or in doubt (a write failed).
func checkModels(t *testing.T, truth Tables, workers []*worker) {
	t.Helper()
	flat := map[string]string{}
	for _, items := range truth {
		for _, it := range items {
			flat[it.Key] = normalize(it.Value)
		}
	}
	var bad []string
	for _, w := range workers {
		for k, v := range w.model {
			if got, ok := flat[k]; !ok || got != v {
				bad = append(bad, k+": acknowledged "+v+", the truth has "+got)
			}
		}
	}
	for k := range flat {
		m := ownerRE.FindStringSubmatch(k)
		if m == nil {
			continue
		}
		w := workers[m[1][0]-'0']
		if _, ok := w.model[k]; !ok && !w.uncertain[k] {
			bad = append(bad, k+": in the truth, but worker "+m[1]+" deleted it or never wrote it")
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%d keys differ from what the Admin API acknowledged:\n%s", len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
}

// checkReplies: no client was refused for who it is; each client's token,
// issued by one member, was accepted by another, and every member
// accepted tokens other members issued. It returns, per member, how many
// calls it served with a token another member issued.
func (r *secureRun) checkReplies(t *testing.T) map[string]int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	foreign := map[string]int{}
	for name, c := range r.clients {
		st := c.Replies()
		if len(st.Refusals) > 0 || st.Statuses[401] > 0 {
			t.Errorf("%s was refused %d times (%d × 401): %s", name, len(st.Refusals), st.Statuses[401], strings.Join(st.Refusals, "; "))
		}
		if len(c.endpoints) == 1 {
			continue // a client of one member
		}
		if len(st.Issuers) != 1 {
			t.Errorf("%s authenticated on %v, want once, on one member", name, st.Issuers)
			continue
		}
		elsewhere := 0
		for ep, n := range st.Served {
			if st.Issuers[ep] == 0 {
				elsewhere += n
				foreign[ep] += n
			}
		}
		if elsewhere == 0 {
			t.Errorf("%s: its token (issued by %v) was used on no other member: %v", name, st.Issuers, st.Served)
		}
	}
	for _, ep := range r.eps {
		if foreign[ep] == 0 {
			t.Errorf("member %s served no call with a token another member issued", ep)
		}
	}
	return foreign
}

// report logs the run's figures: the operations, what failed under the
// kill, what the clients were answered, and the gateways' watches.
func (r *secureRun) report(t *testing.T, gws map[string]*DataPlane, workers []*worker) {
	stats := map[string]int{}
	unknown, retried := 0, 0
	for _, w := range workers {
		for k, v := range w.stats {
			stats[k] += v
		}
		unknown += w.unknown
		retried += w.retried
	}
	statuses := map[int]int{}
	r.mu.Lock()
	for _, c := range r.clients {
		for s, n := range c.Replies().Statuses {
			statuses[s] += n
		}
	}
	r.mu.Unlock()
	t.Logf("Admin operations %v; %d failed under the kill (outcome learned later), %d retried by the client on another member",
		stats, unknown, retried)
	t.Logf("HTTP statuses over all clients: %v; calls served with a token another member issued, per member: %v", statuses, r.foreign)
	names := make([]string, 0, len(gws))
	for name := range gws {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		d := gws[name]
		t.Logf("%s: %d watch messages, %d watch opens, at revision %d", name, len(d.Revisions()), d.WatchOpens(), d.Revision())
	}
}
