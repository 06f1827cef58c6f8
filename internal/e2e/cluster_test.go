package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

// watchLog is what one watcher saw.
type watchLog struct {
	member  int
	events  []string // "rev type key value"
	revs    []int64
	headers []int64
	err     error
	last    atomic.Int64 // revision of the last event
}

// watchAll records every event under prefix from revision from on the
// given client until ctx ends.
func watchAll(ctx context.Context, cl *clientv3.Client, member int, prefix string, from int64) *watchLog {
	l := &watchLog{member: member}
	watchInto(ctx, cl, l, prefix, from)
	return l
}

func watchInto(ctx context.Context, cl *clientv3.Client, l *watchLog, prefix string, from int64) {
	for resp := range cl.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			l.err = err
			continue
		}
		l.headers = append(l.headers, resp.Header.Revision)
		for _, ev := range resp.Events {
			l.revs = append(l.revs, ev.Kv.ModRevision)
			l.events = append(l.events, fmt.Sprintf("%d %s %s %s", ev.Kv.ModRevision, ev.Type, ev.Kv.Key, ev.Kv.Value))
			l.last.Store(ev.Kv.ModRevision)
		}
	}
}

// Acceptance (cluster 2, 3): watchers on every member during five leader
// failovers each receive every revision exactly once, in order; no header
// revision goes backwards; every member delivers the same events; then the
// database and the members agree.
func TestClusterWatchContinuityAcrossFailovers(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start, err := c.Client().Put(ctx, "w/start", "0")
	if err != nil {
		t.Fatal(err)
	}
	from := start.Header.Revision

	wctx, stopWatch := context.WithCancel(ctx)
	var logs []*watchLog
	var wwg sync.WaitGroup
	for m := range c.Members {
		for range 2 {
			cl := c.Client(m)
			l := &watchLog{member: m}
			logs = append(logs, l)
			wwg.Add(1)
			go func() {
				defer wwg.Done()
				watchInto(wctx, cl, l, "w/", from)
			}()
		}
	}

	// Writers on all endpoints until the failovers are done.
	wrCtx, stopWrites := context.WithCancel(ctx)
	var acked sync.Map // revision -> value
	var nacks atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		cl := c.Client()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; wrCtx.Err() == nil; i++ {
				v := fmt.Sprintf("%d-%d", w, i)
				octx, cancel := context.WithTimeout(wrCtx, 2*time.Second)
				resp, err := cl.Put(octx, fmt.Sprintf("w/%d/%d", w, i%50), v)
				cancel()
				if err == nil {
					acked.Store(resp.Header.Revision, v)
					nacks.Add(1)
				} else {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	// writesAcked waits until the writers have had more writes acknowledged
	// since the last failover, so every failover happens amid writes.
	writesAcked := func() {
		t.Helper()
		from := nacks.Load()
		waitFor(t, ctx, "writes acknowledged between failovers", func() bool { return nacks.Load() >= from+20 })
	}
	var leaders []int
	for range 5 {
		writesAcked()
		leader := c.Leader(15 * time.Second)
		leaders = append(leaders, leader)
		c.Crash(leader)
		c.Leader(15 * time.Second)
		c.Restart(leader)
	}
	writesAcked()
	stopWrites()
	wg.Wait()
	end, err := c.Client().Put(ctx, "w/end", "1")
	if err != nil {
		t.Fatal(err)
	}
	final := end.Header.Revision

	// Every watcher reaches the final revision.
	deadline := time.Now().Add(30 * time.Second)
	for !watchersReached(logs, final) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopWatch()
	wwg.Wait()

	nacked := 0
	acked.Range(func(k, v any) bool { nacked++; return true })
	t.Logf("leaders crashed: %v; revisions %d..%d, %d acknowledged writes, %d watchers", leaders, from, final, nacked, len(logs))
	if nacked < 100 {
		t.Fatalf("only %d acknowledged writes", nacked)
	}
	want := final - from + 1
	for _, l := range logs {
		if int64(len(l.revs)) != want {
			t.Fatalf("watcher on member %d: %d events, want %d (revisions %d..%d)", l.member, len(l.revs), want, from, final)
		}
		for i, r := range l.revs {
			if r != from+int64(i) {
				t.Fatalf("watcher on member %d: event %d has revision %d, want %d", l.member, i, r, from+int64(i))
			}
		}
		if !slices.IsSorted(l.headers) {
			t.Fatalf("watcher on member %d: header revision went backwards", l.member)
		}
		if !slices.Equal(l.events, logs[0].events) {
			t.Fatalf("watchers on members %d and %d saw different events", l.member, logs[0].member)
		}
	}
	// Every acknowledged write is among them, with its value.
	acked.Range(func(k, v any) bool {
		rev := k.(int64)
		ev := logs[0].events[rev-from]
		if !strings.HasSuffix(ev, " "+v.(string)) {
			t.Errorf("acknowledged write at revision %d (%s) is not what was watched: %s", rev, v, ev)
		}
		return true
	})
	checkClusterAgainstDatabase(t, c, dsn)
}

func watchersReached(logs []*watchLog, rev int64) bool {
	for _, l := range logs {
		if l.last.Load() < rev {
			return false
		}
	}
	return true
}

// Acceptance (cluster 4): across leader failovers a lease kept alive never
// expires, and a lease left alone expires no earlier than its TTL and is
// deleted exactly once.
func TestClusterLeasesAcrossFailovers(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client()
	kept, err := cl.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := cl.KeepAlive(ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	if _, err := cl.Put(ctx, "lease/kept", "x", clientv3.WithLease(kept.ID)); err != nil {
		t.Fatal(err)
	}
	const ttl = 4
	granted := time.Now()
	expiring, err := cl.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	put, err := cl.Put(ctx, "lease/expiring", "y", clientv3.WithLease(expiring.ID))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	logs := make([]*watchLog, len(c.Members))
	var wg sync.WaitGroup
	for m := range c.Members {
		wcl := c.Client(m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			logs[m] = watchAll(wctx, wcl, m, "lease/", put.Header.Revision+1)
		}()
	}
	// Two failovers within the TTL.
	for range 2 {
		leader := c.Leader(15 * time.Second)
		c.Crash(leader)
		c.Leader(15 * time.Second)
		c.Restart(leader)
	}
	// Not before its TTL: still there, by linearizable reads, until just
	// before it ends. Waiting out the TTL is the point here, so the wait
	// stays, checking all along.
	lastRead := granted.Add(ttl*time.Second - 300*time.Millisecond)
	for {
		if g, err := c.Client().Get(ctx, "lease/expiring"); err != nil || len(g.Kvs) != 1 {
			t.Fatalf("lease expired before its TTL (%v after the grant): %v %v", time.Since(granted), g, err)
		}
		wait := time.Until(lastRead)
		if wait <= 0 {
			break
		}
		time.Sleep(min(50*time.Millisecond, wait))
	}
	// Gone some time after, once.
	deadline := time.Now().Add(20 * time.Second)
	for {
		g, err := c.Client().Get(ctx, "lease/expiring")
		if err == nil && len(g.Kvs) == 0 {
			t.Logf("expired %v after the grant (TTL %ds, 2 failovers)", time.Since(granted).Round(10*time.Millisecond), ttl)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Nothing to poll for: the wait gives a second delete, were there one,
	// time to reach the watchers, whose logs are read once they stop.
	time.Sleep(2 * time.Second)
	stopWatch()
	wg.Wait()
	for m, l := range logs {
		deletes := 0
		for _, ev := range l.events {
			if strings.Contains(ev, " DELETE lease/kept") {
				t.Fatalf("member %d: the kept-alive lease expired: %s", m, ev)
			}
			if strings.Contains(ev, " DELETE lease/expiring") {
				deletes++
			}
		}
		if deletes != 1 {
			t.Fatalf("member %d: %d deletes of the expired key, want 1 (%v)", m, deletes, l.events)
		}
	}
	if g, err := c.Client().Get(ctx, "lease/kept"); err != nil || len(g.Kvs) != 1 {
		t.Fatalf("kept-alive key: %v %v", g, err)
	}
}

// Acceptance (cluster 5): clientv3 given one endpoint learns all three by
// auto-sync; etcdctl's member list and endpoint status --cluster show the
// three members and the leader.
func TestClusterMembersForClients(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := clientv3.New(clientv3.Config{Endpoints: []string{c.Members[0].URL}, AutoSyncInterval: 200 * time.Millisecond,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want := c.Endpoints()
	sort.Strings(want)
	for {
		got := slices.Clone(cl.Endpoints())
		sort.Strings(got)
		if slices.Equal(got, want) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("auto-sync endpoints %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := cl.Put(ctx, "synced", "1"); err != nil {
		t.Fatal(err)
	}

	etcdctl := requireEtcdctl(t)
	checkEtcdctl := func(leader int) {
		t.Helper()
		out, err := exec.CommandContext(ctx, etcdctl, "--endpoints", strings.Join(c.Endpoints(), ","), "member", "list", "-w", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("etcdctl member list: %v\n%s", err, out)
		}
		var ml struct {
			Members []struct {
				ID         uint64   `json:"ID"`
				Name       string   `json:"name"`
				ClientURLs []string `json:"clientURLs"`
			} `json:"members"`
		}
		if err := json.Unmarshal(out, &ml); err != nil {
			t.Fatalf("etcdctl member list: %v\n%s", err, out)
		}
		if len(ml.Members) != 3 {
			t.Fatalf("etcdctl member list: %d members\n%s", len(ml.Members), out)
		}
		for _, m := range ml.Members {
			i := slices.IndexFunc(c.Members, func(x *testcluster.Member) bool { return x.Name == m.Name })
			if i < 0 || m.ID != node.MemberID(m.Name) || !slices.Equal(m.ClientURLs, []string{c.Members[i].URL}) {
				t.Fatalf("etcdctl member list: unexpected member %+v\n%s", m, out)
			}
		}
		out, err = exec.CommandContext(ctx, etcdctl, "--endpoints", c.Members[(leader+1)%3].URL, "endpoint", "status", "--cluster", "-w", "json").CombinedOutput()
		if err != nil {
			t.Fatalf("etcdctl endpoint status --cluster: %v\n%s", err, out)
		}
		var st []struct {
			Endpoint string `json:"Endpoint"`
			Status   struct {
				Header struct {
					MemberID uint64 `json:"member_id"`
				} `json:"header"`
				Leader uint64 `json:"leader"`
			} `json:"Status"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("etcdctl endpoint status: %v\n%s", err, out)
		}
		if len(st) != 3 {
			t.Fatalf("etcdctl endpoint status --cluster: %d endpoints\n%s", len(st), out)
		}
		for _, s := range st {
			if s.Status.Leader != node.MemberID(c.Members[leader].Name) {
				t.Fatalf("endpoint %s reports leader %x, want %s\n%s", s.Endpoint, s.Status.Leader, c.Members[leader].Name, out)
			}
		}
	}
	leader := c.Leader(10 * time.Second)
	checkEtcdctl(leader)
	// After a failover and the old leader's return, the new leader.
	c.Crash(leader)
	newLeader := c.Leader(15 * time.Second)
	c.Restart(leader)
	c.Leader(15 * time.Second)
	if l := c.Leader(15 * time.Second); l != newLeader {
		newLeader = l
	}
	checkEtcdctl(newLeader)
}

func requireEtcdctl(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Fatalf("etcdctl is not installed (apt-get install etcd-client): %v", err)
	}
	return p
}

// Acceptance (cluster 6): a fourth member started with --join and
// --role nonvoter catches up by snapshot (the log it needs is truncated),
// serves linearizable reads and watches, and is no voter: it never leads,
// and without a majority of the voters nothing is written.
func TestClusterNonvoterJoinsBySnapshot(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, mc *node.MemberConfig) {
		mc.Node.SnapshotThreshold = 64
		mc.Node.TrailingLogs = 32
		mc.Node.SnapshotInterval = 50 * time.Millisecond
		// Small segments, so that the wal store drops the entries the
		// snapshot covers instead of serving them from its open segment.
		mc.Node.WALSegmentBytes = 4096
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client()
	const keys = 500
	for i := range keys {
		if _, err := cl.Put(ctx, fmt.Sprintf("data/%04d", i), strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The leader has taken a snapshot (and truncated its log past it).
	leader := c.Running(c.Leader(15 * time.Second))
	waitFor(t, ctx, "a snapshot on the leader", func() bool {
		idx, _ := strconv.Atoi(leader.Node.RaftStats()["last_snapshot_index"])
		return idx > 0
	})
	nv := c.Add(true)
	ncl := c.Client(nv)
	for {
		g, err := ncl.Get(ctx, "data/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err == nil && g.Count == keys {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("non-voter did not catch up: %v %v", g, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stats := c.Running(nv).Node.RaftStats()
	if idx, _ := strconv.Atoi(stats["last_snapshot_index"]); idx == 0 {
		t.Fatalf("non-voter caught up without a snapshot: %v", stats)
	}
	// Watches on it see new writes.
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	wch := ncl.Watch(wctx, "data/new", clientv3.WithCreatedNotify())
	if resp := <-wch; !resp.Created {
		t.Fatalf("watch on the non-voter not created: %+v %v", resp, resp.Err())
	}
	if _, err := cl.Put(ctx, "data/new", "1"); err != nil {
		t.Fatal(err)
	}
	if resp := <-wch; len(resp.Events) != 1 || resp.Events[0].Type != mvccpb.PUT {
		t.Fatalf("watch on the non-voter: %+v %v", resp, resp.Err())
	}
	ml, err := cl.MemberList(ctx)
	if err != nil || len(ml.Members) != 4 {
		t.Fatalf("member list: %v %v", ml, err)
	}
	for _, m := range ml.Members {
		if m.IsLearner != (m.Name == c.Members[nv].Name) {
			t.Fatalf("member %s: is_learner %v", m.Name, m.IsLearner)
		}
	}
	// It never leads, and it does not make a quorum: with two of the
	// three voters down, writes fail.
	for range 2 {
		leader := c.Leader(15 * time.Second)
		if leader == nv {
			t.Fatal("the non-voter leads")
		}
		c.Crash(leader)
		if l := c.Leader(15 * time.Second); l == nv {
			t.Fatal("the non-voter leads")
		}
		c.Restart(leader)
	}
	var down []int
	for i := range 3 {
		if len(down) < 2 {
			c.Crash(i)
			down = append(down, i)
		}
	}
	wctx2, cancel2 := context.WithTimeout(ctx, 3*time.Second)
	_, err = c.Client(nv).Put(wctx2, "data/no-quorum", "1")
	cancel2()
	if err == nil {
		t.Fatal("a write succeeded with one voter of three and the non-voter")
	}
	if st, _ := c.Running(nv).Node.Status(ctx); st != nil && st.Leader == node.MemberID(c.Members[nv].Name) {
		t.Fatal("the non-voter leads")
	}
	for _, i := range down {
		c.Restart(i)
	}
	if _, err := c.Client(nv).Put(ctx, "data/quorum-back", "1"); err != nil {
		t.Fatalf("write after the voters returned: %v", err)
	}
}

// A member cut off from the others has no leader: /health answers 503 (a
// load balancer drains it), and watch streams that require a leader are
// refused or ended with etcd's "no leader"; healed, it is healthy again.
func TestClusterMemberWithoutLeader(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := (c.Leader(10*time.Second) + 1) % 3
	cl := c.Client(f)
	rlCtx := clientv3.WithRequireLeader(ctx)
	kept := cl.Watch(rlCtx, "x")
	plain := cl.Watch(ctx, "x")
	if code, _ := httpGet(t, c.Members[f].URL+"/health"); code != 200 {
		t.Fatalf("/health before the partition: %d", code)
	}
	c.Isolate(f)
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := httpGet(t, c.Members[f].URL+"/health")
		if code == 503 && strings.Contains(body, "no leader") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health of an isolated member: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case resp, ok := <-kept:
		if ok && !errors.Is(resp.Err(), rpctypes.ErrNoLeader) {
			t.Fatalf("require-leader watch: %+v %v", resp, resp.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("require-leader watch kept going without a leader")
	}
	again := cl.Watch(clientv3.WithRequireLeader(ctx), "x")
	select {
	case resp := <-again:
		if !errors.Is(resp.Err(), rpctypes.ErrNoLeader) {
			t.Fatalf("new require-leader watch: %+v %v", resp, resp.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("new require-leader watch accepted without a leader")
	}
	select {
	case resp := <-plain:
		t.Fatalf("plain watch ended: %+v %v", resp, resp.Err())
	default:
	}
	c.Heal()
	deadline = time.Now().Add(15 * time.Second)
	for {
		if code, _ := httpGet(t, c.Members[f].URL+"/health"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/health after healing stays unhealthy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.Client().Put(ctx, "x", "1"); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-plain:
		if len(resp.Events) != 1 {
			t.Fatalf("plain watch after healing: %+v %v", resp, resp.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plain watch saw nothing after healing")
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// members returns the member list as name -> is_learner, and names whose
// client URLs are withheld (failed members).
func members(t *testing.T, ctx context.Context, cl *clientv3.Client) (map[string]bool, []string) {
	t.Helper()
	ml, err := cl.MemberList(ctx)
	if err != nil {
		t.Fatalf("member list: %v", err)
	}
	out := map[string]bool{}
	var failed []string
	for _, m := range ml.Members {
		out[m.Name] = m.IsLearner
		if len(m.ClientURLs) == 0 {
			failed = append(failed, m.Name)
		}
	}
	return out, failed
}

// holdFor runs check every 50 ms for d, and once more at the end: for an
// assertion that nothing happens during d.
func holdFor(t *testing.T, d time.Duration, check func()) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		check()
		wait := time.Until(end)
		if wait <= 0 {
			return
		}
		time.Sleep(min(50*time.Millisecond, wait))
	}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Membership: a new voter joins as a non-voter and is promoted once caught
// up; a graceful leave removes it; a crashed member is reported (no client
// URL, a metric) but stays until `etcdsql member remove`.
func TestClusterMembershipChanges(t *testing.T) {
	// Room for a fourth voter (a cluster formed by three promotes up to three).
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, mc *node.MemberConfig) { mc.Node.MaxVoters = 4 }})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client(0)
	for i := range 200 {
		if _, err := cl.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	n4 := c.Add(false)
	name4 := c.Members[n4].Name
	waitFor(t, ctx, "the fourth member promoted to voter", func() bool {
		ms, _ := members(t, ctx, cl)
		learner, ok := ms[name4]
		return ok && !learner
	})
	if g, err := c.Client(n4).Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || g.Count != 200 {
		t.Fatalf("fourth member: %v %v", g, err)
	}

	if err := c.Running(n4).Node.Leave(10 * time.Second); err != nil {
		t.Fatalf("leave: %v", err)
	}
	c.Stop(n4)
	waitFor(t, ctx, "the member that left removed", func() bool {
		ms, _ := members(t, ctx, cl)
		_, ok := ms[name4]
		return !ok && len(ms) == 3
	})

	c.Crash(1)
	name2 := c.Members[1].Name
	waitFor(t, ctx, "the crashed member reported", func() bool {
		ms, failed := members(t, ctx, cl)
		return len(ms) == 3 && slices.Equal(failed, []string{name2})
	})
	leader := c.Running(c.Leader(15 * time.Second))
	waitFor(t, ctx, "the leader's etcdsql_cluster_failed_members at 1", func() bool {
		return scrapeMetric(t, leader.ClientAddr, "etcdsql_cluster_failed_members") == 1
	})
	// Still a member after a while: nothing removes it but an operator.
	// Nothing to wait for here, so the wait stays, checking all along.
	holdFor(t, 2*time.Second, func() {
		if ms, _ := members(t, ctx, cl); len(ms) != 3 {
			t.Fatalf("the crashed member was removed without an operator: %v", ms)
		}
	})
	out, err := runBinary(t, "member", "list", "--endpoints", c.Members[0].URL)
	if err != nil || !strings.Contains(out, name2) || !strings.Contains(out, "failed") {
		t.Fatalf("etcdsql member list: %v\n%s", err, out)
	}
	out, err = runBinary(t, "member", "remove", name2, "--endpoints", c.Members[0].URL)
	if err != nil {
		t.Fatalf("etcdsql member remove: %v\n%s", err, out)
	}
	if ms, _ := members(t, ctx, cl); len(ms) != 2 {
		t.Fatalf("after member remove: %v", ms)
	}
	out, err = runBinary(t, "member", "remove", name2, "--endpoints", c.Members[0].URL)
	if err == nil || !strings.Contains(out, "member not found") {
		t.Fatalf("removing a removed member: %v\n%s", err, out)
	}
	if _, err := cl.Put(ctx, "after", "removal"); err != nil {
		t.Fatal(err)
	}
}

// --dead-server-cleanup removes a member failed for that long, while the
// voters left are still three or more.
func TestClusterDeadServerCleanup(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Configure: func(i int, mc *node.MemberConfig) {
		mc.Node.DeadServerCleanup = time.Second
		mc.Node.MaxVoters = 4
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client(0)
	n4 := c.Add(false)
	waitFor(t, ctx, "four voters", func() bool {
		ms, _ := members(t, ctx, cl)
		return len(ms) == 4 && !ms[c.Members[n4].Name]
	})
	c.Crash(n4)
	waitFor(t, ctx, "the dead member removed", func() bool {
		ms, _ := members(t, ctx, cl)
		return len(ms) == 3
	})
	// Three voters left: one more failure is only reported.
	c.Crash(2)
	// Nothing to wait for here, so the wait stays, checking all along.
	holdFor(t, 4*time.Second, func() {
		if ms, _ := members(t, ctx, cl); len(ms) != 3 {
			t.Fatalf("cleanup went below three voters: %v", ms)
		}
	})
}

// scrapeMetric reads one unlabelled gauge from a member's /metrics.
func scrapeMetric(t *testing.T, addr, name string) float64 {
	t.Helper()
	_, body := httpGet(t, "http://"+addr+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %q", name, line)
			}
			return f
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

// A leader paused (SIGSTOP) while clients keep writing through the others:
// a new leader takes over; the old one, resumed, follows it and writes
// nothing more to the database (its term is fenced off). Afterwards every
// acknowledged write is everywhere and the database agrees with every
// member.
func TestClusterPausedLeader(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	ps := testcluster.StartProcesses(t, 3, "--mysql-dsn", dsn, "--election-timeout", "300")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	leader := procLeader(t, ps)
	others := ps.EndpointsExcept(leader)
	cl := testserver.NewClient(t, others...)
	// Writes run throughout, so that the leader is paused in the middle
	// of its work (its sink likely inside a database transaction).
	acked := map[string]string{}
	var longest time.Duration
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Now()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k, v := fmt.Sprintf("p/%d", i%50), fmt.Sprintf("v%d", i)
			octx, c := context.WithTimeout(ctx, 2*time.Second)
			_, err := cl.Put(octx, k, v)
			c()
			if err == nil {
				acked[k] = v
				longest = max(longest, time.Since(last))
				last = time.Now()
			}
		}
	}()
	// A second of writes, the leader paused for four, a second more: the
	// durations are the test (the writer measures the longest stall).
	time.Sleep(time.Second)
	ps.Pause(leader)
	time.Sleep(4 * time.Second)
	ps.Resume(leader)
	time.Sleep(time.Second)
	close(stop)
	<-done
	t.Logf("longest time without a successful write: %v", longest.Round(time.Millisecond))
	if longest > 3*time.Second {
		t.Fatalf("writes stalled for %v after the leader was paused", longest)
	}
	if len(acked) < 50 {
		t.Fatalf("only %d keys acknowledged", len(acked))
	}
	all := testserver.NewClient(t, ps.Endpoints()...)
	barrier, err := all.Put(ctx, "p/barrier", "x")
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range ps.Endpoints() {
		c := testserver.NewClient(t, u)
		waitFor(t, ctx, "member "+u+" caught up", func() bool {
			g, err := c.Get(ctx, "p/barrier", clientv3.WithSerializable())
			return err == nil && g.Header.Revision >= barrier.Header.Revision
		})
		for k, v := range acked {
			g, err := c.Get(ctx, k, clientv3.WithSerializable())
			if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != v {
				t.Fatalf("member %d: acknowledged %s=%s: %v %v", i, k, v, g, err)
			}
		}
	}
	out, err := runBinary(t, "check", "--mysql-dsn", dsn, "--endpoints", strings.Join(ps.Endpoints(), ","))
	if err != nil || !strings.Contains(out, "no differences") {
		t.Fatalf("etcdsql check: %v\n%s", err, out)
	}
}

// A watcher that starts more than 1,000 revisions behind gets its catch-up
// over several messages; every header along the stream, the created
// message's included, is at most the next one's.
func TestWatchCatchUpHeadersNeverGoDown(t *testing.T) {
	s := testserver.Start(t)
	cl := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, err := cl.Put(ctx, "c/0", "v")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 2500; i++ {
		if _, err := cl.Put(ctx, fmt.Sprintf("c/%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := pb.NewWatchClient(cl.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("c/"), RangeEnd: []byte("c0"), StartRevision: first.Header.Revision}}}); err != nil {
		t.Fatal(err)
	}
	var headers []int64
	events := 0
	for events < 2500 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		headers = append(headers, resp.Header.Revision)
		events += len(resp.Events)
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision > resp.Header.Revision {
				t.Fatalf("event at %d in a message headed %d", ev.Kv.ModRevision, resp.Header.Revision)
			}
		}
	}
	if len(headers) < 4 || !slices.IsSorted(headers) {
		t.Fatalf("headers %v: want a created message and at least three catch-up messages, never going down", headers)
	}
}
