package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// TestRebuildFromDatabase writes a varied history to member A, loses A's
// data dir, and starts member B with an empty data dir over A's database:
// B must show exactly A's state (keys with every field, revision, compact
// revision, history, leases) and continue A's revisions.
func TestRebuildFromDatabase(t *testing.T) {
	t.Run("mariadb", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		testRebuild(t,
			func(t *testing.T) *testserver.Server {
				return testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(t.TempDir()))
			},
			func(t *testing.T, a *testserver.Server) (*testserver.Server, sqlsink.Config) {
				if err := os.RemoveAll(a.DataDir); err != nil {
					t.Fatal(err)
				}
				b := testserver.Start(t, testserver.WithMySQL(dsn), testserver.WithDataDir(t.TempDir()))
				return b, sqlsink.Config{MySQLDSN: dsn}
			})
	})
	t.Run("sqlite", func(t *testing.T) {
		testRebuild(t,
			func(t *testing.T) *testserver.Server {
				return testserver.Start(t, testserver.WithDataDir(t.TempDir()))
			},
			func(t *testing.T, a *testserver.Server) (*testserver.Server, sqlsink.Config) {
				// Only the database moves to B's new data dir; the raft
				// state stays behind and is deleted.
				dirB := t.TempDir()
				copied := 0
				for _, name := range []string{"etcdsql.db", "etcdsql.db-wal", "etcdsql.db-shm"} {
					if copyFile(t, filepath.Join(a.DataDir, name), filepath.Join(dirB, name)) {
						copied++
					}
				}
				if copied == 0 {
					t.Fatalf("no etcdsql.db in A's data dir %s", a.DataDir)
				}
				if err := os.RemoveAll(a.DataDir); err != nil {
					t.Fatal(err)
				}
				b := testserver.Start(t, testserver.WithDataDir(dirB))
				return b, sqlsink.Config{SQLitePath: filepath.Join(dirB, "etcdsql.db")}
			})
	})
}

// copyFile copies src to dst and reports whether src existed.
func copyFile(t *testing.T, src, dst string) bool {
	t.Helper()
	in, err := os.Open(src)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return true
}

// kvString renders every field of a key-value.
func kvString(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%q=%q create=%d mod=%d version=%d lease=%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

func kvsString(kvs []*mvccpb.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kvString(kv)
	}
	return out
}

// evString renders an event with its revision first.
func evString(ev *clientv3.Event) string {
	return fmt.Sprintf("@%d %s %s", ev.Kv.ModRevision, ev.Type, kvString(ev.Kv))
}

// diffLines reports how two renderings differ: entries lost and entries
// added by the rebuild, or else the first place where the order differs.
func diffLines(t *testing.T, what string, want, got []string) {
	t.Helper()
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
	}
	var lost, added []string
	for _, w := range want {
		if count[w] > 0 {
			lost = append(lost, w)
			count[w]--
		}
	}
	for _, g := range got {
		if count[g] < 0 {
			added = append(added, g)
			count[g]++
		}
	}
	for i, l := range lost {
		if i == 10 {
			t.Errorf("%s: ... %d entries lost in all", what, len(lost))
			break
		}
		t.Errorf("%s: lost in the rebuild: %s", what, l)
	}
	for i, a := range added {
		if i == 10 {
			t.Errorf("%s: ... %d entries added in all", what, len(added))
			break
		}
		t.Errorf("%s: added by the rebuild: %s", what, a)
	}
	if len(lost) > 0 || len(added) > 0 {
		return
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("%s: order differs at entry %d: %s before, %s after the rebuild", what, i, want[i], got[i])
			return
		}
	}
}

// rebuildLease is what a lease looked like before the rebuild.
type rebuildLease struct {
	granted int64
	keys    []string
}

// rebuildState is everything the test compares across the rebuild.
type rebuildState struct {
	rev      int64
	all      []string           // every key-value
	binOrder []string           // keys of a prefix range over /bin/
	atRev    map[int64][]string // every key-value at older revisions
	history  []string           // every event since the compact revision
	leases   map[int64]rebuildLease
}

func testRebuild(t *testing.T, startA func(*testing.T) *testserver.Server,
	startB func(*testing.T, *testserver.Server) (*testserver.Server, sqlsink.Config)) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	a := startA(t)
	ca := testserver.NewClient(t, a.URL)
	rev0 := mustRev(t, ca)

	// A watcher on every key, from the start, recording the last revision
	// it received.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := ca.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(rev0+1))
	var wmu sync.Mutex
	var lastSeen int64
	var watchErr error
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for resp := range wch {
			wmu.Lock()
			if err := resp.Err(); err != nil && watchErr == nil && !resp.Canceled {
				watchErr = err
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision < lastSeen && watchErr == nil {
					watchErr = fmt.Errorf("watch went back from revision %d to %d", lastSeen, ev.Kv.ModRevision)
				}
				lastSeen = ev.Kv.ModRevision
			}
			wmu.Unlock()
		}
	}()
	waitWatcher := func(rev int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; ; i++ {
			wmu.Lock()
			last, err := lastSeen, watchErr
			wmu.Unlock()
			if err != nil {
				t.Fatalf("watcher on A: %v", err)
			}
			if last >= rev {
				return
			}
			if time.Now().After(deadline) || i > 5000 {
				t.Fatalf("watcher on A at revision %d, want %d", last, rev)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// 500 puts over 100 keys, mixed case among them, from 5 writers.
	keys := []string{"Route1", "route1", "ROUTE1", "/apisix/routes/Route1", "/apisix/routes/route1"}
	for i := len(keys); i < 100; i++ {
		keys = append(keys, fmt.Sprintf("/k/%02d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 5)
	for w := 0; w < 5; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < 100; i++ {
				val := make([]byte, rng.Intn(40))
				rng.Read(val) // binary values, sometimes empty
				if _, err := ca.Put(ctx, keys[rng.Intn(len(keys))], string(val)); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Deletes well below the compact revision: a single key, a range, a
	// deleted key created again; a leased key put again without its lease.
	// Compaction drops every version of a key deleted before the compact
	// revision, in the store and in kv_log alike: such keys must stay
	// deleted after the rebuild.
	early, err := ca.Grant(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	must(ca.Put(ctx, "/early/leased", "l", clientv3.WithLease(early.ID)))
	must(ca.Put(ctx, "/early/unleased", "l", clientv3.WithLease(early.ID)))
	must(ca.Put(ctx, "/early/unleased", "no lease now"))
	must(ca.Put(ctx, "/early/gone", "soon deleted"))
	must(ca.Delete(ctx, "/early/gone"))
	must(ca.Delete(ctx, keys[10]))
	must(ca.Delete(ctx, "/k/9", clientv3.WithPrefix()))
	must(ca.Delete(ctx, keys[40]))
	must(ca.Put(ctx, keys[40], "again"))
	deletedEarly := mustRev(t, ca)

	// Binary keys: every byte after a prefix, all 256 bytes in one key
	// (on its own and after a prefix), and keys that differ only in
	// trailing bytes a padding collation would ignore.
	all256 := make([]byte, 256)
	for i := range all256 {
		all256[i] = byte(i)
	}
	for b := 0; b < 256; b++ {
		must(ca.Put(ctx, "/bin/"+string([]byte{byte(b)}), string([]byte{byte(255 - b), 0, byte(b)})))
	}
	must(ca.Put(ctx, "/bin/all/"+string(all256), string(all256)))
	must(ca.Put(ctx, string(all256), "all bytes"))
	for _, k := range []string{"/pad/a", "/pad/a ", "/pad/a\x00", "/pad/A", "/pad/a\t"} {
		must(ca.Put(ctx, k, k))
	}

	// Deletes after the compact revision: a single key, a range, and a
	// deleted key created again.
	must(ca.Delete(ctx, "/bin/\x80"))
	must(ca.Delete(ctx, "/k/8", clientv3.WithPrefix()))
	must(ca.Delete(ctx, keys[20]))
	must(ca.Put(ctx, keys[20], "again"))

	// A transaction.
	tr, err := ca.Txn(ctx).If(clientv3.Compare(clientv3.Version("Route1"), ">", 0)).
		Then(clientv3.OpPut("route1", "txn"), clientv3.OpDelete(keys[30]), clientv3.OpPut("/txn/new", "x")).
		Else(clientv3.OpPut("/txn/else", "x")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !tr.Succeeded {
		t.Fatal("txn: Route1 has no version")
	}

	// A lease with keys and one without.
	lease, err := ca.Grant(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := ca.Grant(ctx, 120)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/lease/a", "/lease/b", "/bin/leased\xff"} {
		must(ca.Put(ctx, k, "leased", clientv3.WithLease(lease.ID)))
	}

	// Compact in the middle of the history, then some more writes.
	mid := mustRev(t, ca)
	compactRev := deletedEarly + 100 // among the binary keys
	if compactRev >= mid {
		t.Fatalf("compact revision %d not below the current revision %d", compactRev, mid)
	}
	waitWatcher(mid)
	if _, err := ca.Compact(ctx, compactRev); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		must(ca.Put(ctx, keys[i%7], fmt.Sprintf("post-compact %d", i)))
	}
	must(ca.Delete(ctx, "/bin/\x00"))

	// The watcher's last revision L; then 20 writes it does not see.
	L := mustRev(t, ca)
	waitWatcher(L)
	wcancel()
	select {
	case <-watchDone:
	case <-time.After(5 * time.Second):
		t.Fatal("watch channel not closed after cancel")
	}
	wmu.Lock()
	if lastSeen != L || watchErr != nil {
		t.Fatalf("watcher ended at %d (err %v), want %d", lastSeen, watchErr, L)
	}
	wmu.Unlock()
	var missed []string
	for i := 0; i < 20; i++ {
		k := []string{"/after/" + fmt.Sprint(i), keys[i%5], "/bin/\x07", "/lease/a"}[i%4]
		var opts []clientv3.OpOption
		if k == "/lease/a" {
			opts = append(opts, clientv3.WithLease(lease.ID))
		}
		r, err := ca.Put(ctx, k, fmt.Sprintf("missed %d", i), opts...)
		if err != nil {
			t.Fatal(err)
		}
		if r.Header.Revision != L+int64(i)+1 {
			t.Fatalf("put %d after the watcher: revision %d, want %d", i, r.Header.Revision, L+int64(i)+1)
		}
		missed = append(missed, k)
	}

	before := captureRebuildState(t, ctx, ca, compactRev, []int64{compactRev, compactRev + 1, mid, L})
	if before.rev != L+20 {
		t.Fatalf("revision %d, want %d", before.rev, L+20)
	}
	// Missed puts, as events, read back on A for comparison.
	var missedEvents []string
	for _, h := range before.history {
		var rev int64
		if _, err := fmt.Sscanf(h, "@%d ", &rev); err != nil {
			t.Fatalf("event %q: %v", h, err)
		}
		if rev > L {
			missedEvents = append(missedEvents, h)
		}
	}
	if len(missedEvents) != 20 {
		t.Fatalf("history on A has %d events after L=%d, want the 20 missed puts", len(missedEvents), L)
	}
	for i, h := range missedEvents {
		if !strings.Contains(h, fmt.Sprintf("PUT %q=%q", missed[i], fmt.Sprintf("missed %d", i))) {
			t.Fatalf("missed put %d on A: %s", i, h)
		}
	}
	if _, ok := before.leases[int64(lease.ID)]; !ok {
		t.Fatalf("lease %x not listed on A", lease.ID)
	}
	if _, ok := before.leases[int64(bare.ID)]; !ok {
		t.Fatalf("lease %x not listed on A", bare.ID)
	}
	t.Logf("A: revision %d, compact revision %d, watcher's last revision %d, %d keys, %d history events, %d leases",
		before.rev, compactRev, L, len(before.all), len(before.history), len(before.leases))

	// Close A, lose its data dir, start B on the same database.
	ca.Close() // no open streams: A's server stops at once
	closeStart := time.Now()
	if err := a.Close(); err != nil {
		t.Fatalf("close A: %v", err)
	}
	startAt := time.Now()
	b, inspect := startB(t, a)
	t.Logf("A closed in %v; B rebuilt and serving in %v", startAt.Sub(closeStart), time.Since(startAt))
	cb := testserver.NewClient(t, b.URL)

	after := captureRebuildState(t, ctx, cb, compactRev, []int64{compactRev, compactRev + 1, mid, L})
	if after.rev != before.rev {
		t.Errorf("header revision %d after the rebuild, %d before", after.rev, before.rev)
	}
	diffLines(t, "key-values", before.all, after.all)
	diffLines(t, "prefix range /bin/", before.binOrder, after.binOrder)
	for _, r := range []int64{compactRev, compactRev + 1, mid, L} {
		diffLines(t, fmt.Sprintf("key-values at revision %d", r), before.atRev[r], after.atRev[r])
	}
	diffLines(t, "events since the compact revision", before.history, after.history)
	for id, l := range before.leases {
		got, ok := after.leases[id]
		switch {
		case !ok:
			t.Errorf("lease %x (granted TTL %d, keys %q) lost in the rebuild", id, l.granted, l.keys)
		case got.granted != l.granted || strings.Join(got.keys, "\n") != strings.Join(l.keys, "\n"):
			t.Errorf("lease %x: granted TTL %d keys %q after the rebuild; %d %q before", id, got.granted, got.keys, l.granted, l.keys)
		}
	}
	for id := range after.leases {
		if _, ok := before.leases[id]; !ok {
			t.Errorf("lease %x appeared in the rebuild", id)
		}
	}

	// Binary and mixed-case keys read back one by one.
	for _, k := range []string{"Route1", "route1", "ROUTE1", string(all256), "/bin/all/" + string(all256), "/bin/\xff", "/bin/\x01", "/pad/a ", "/pad/a\x00"} {
		rb, err := cb.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(rb.Kvs) != 1 || string(rb.Kvs[0].Key) != k {
			t.Errorf("Get(%q) after the rebuild: %v", k, kvsString(rb.Kvs))
		}
	}
	if !sort.SliceIsSorted(after.binOrder, func(i, j int) bool { return after.binOrder[i] < after.binOrder[j] }) {
		t.Error("prefix range /bin/ is not in byte order after the rebuild")
	}

	// A watch from L+1 gets exactly the 20 missed puts; a progress
	// notification at the current revision proves nothing else is pending.
	wctxB, wcancelB := context.WithCancel(ctx)
	defer wcancelB()
	wchB := cb.Watch(wctxB, "", clientv3.WithPrefix(), clientv3.WithRev(L+1))
	var gotMissed []string
	progressed := false
	timeout := time.After(10 * time.Second)
	for i := 0; i < 1000 && !progressed; i++ {
		select {
		case resp, ok := <-wchB:
			if !ok {
				t.Fatalf("watch from L+1 closed after %d events", len(gotMissed))
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch from L+1: %v", err)
			}
			if resp.IsProgressNotify() {
				if resp.Header.Revision != before.rev {
					t.Errorf("progress notification at revision %d, want %d", resp.Header.Revision, before.rev)
				}
				progressed = true
				break
			}
			for _, ev := range resp.Events {
				gotMissed = append(gotMissed, evString(ev))
			}
			if len(gotMissed) == 20 {
				if err := cb.RequestProgress(wctxB); err != nil {
					t.Fatal(err)
				}
			}
		case <-timeout:
			t.Fatalf("watch from L+1: %d events and no progress notification after 10 s", len(gotMissed))
		}
	}
	diffLines(t, "watch from L+1", missedEvents, gotMissed)
	wcancelB()

	// A watch from below the compact revision is canceled with it.
	wr, ok := <-cb.Watch(ctx, "", clientv3.WithPrefix(), clientv3.WithRev(compactRev-1))
	if !ok || !wr.Canceled || wr.CompactRevision != compactRev {
		t.Errorf("watch from %d after the rebuild: canceled=%v compact_revision=%d (ok %v), want canceled at %d",
			compactRev-1, wr.Canceled, wr.CompactRevision, ok, compactRev)
	}

	// The lease still holds its keys: revoking it deletes them. First
	// check the next revision.
	next, err := cb.Put(ctx, "/rebuild/next", "x")
	if err != nil {
		t.Fatal(err)
	}
	if next.Header.Revision != before.rev+1 {
		t.Errorf("first put after the rebuild at revision %d, want %d", next.Header.Revision, before.rev+1)
	}
	ttl, err := cb.TimeToLive(ctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL <= 0 || ttl.TTL > 300 || ttl.GrantedTTL != 300 {
		t.Errorf("lease after the rebuild: TTL %d granted %d, want 0 < TTL <= 300, granted 300", ttl.TTL, ttl.GrantedTTL)
	}
	checkDatabase(t, cb, inspect)
}

// captureRebuildState reads everything the rebuild must preserve, and
// checks the compact revision: a read below it fails, a read at it works.
func captureRebuildState(t *testing.T, ctx context.Context, c *clientv3.Client, compactRev int64, revs []int64) rebuildState {
	t.Helper()
	var st rebuildState
	all, err := c.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	st.rev = all.Header.Revision
	st.all = kvsString(all.Kvs)
	if int64(len(all.Kvs)) != all.Count {
		t.Errorf("range over every key: %d key-values, count %d", len(all.Kvs), all.Count)
	}
	bin, err := c.Get(ctx, "/bin/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bin.Kvs {
		st.binOrder = append(st.binOrder, string(kv.Key))
	}
	for i := 1; i < len(bin.Kvs); i++ {
		if bytes.Compare(bin.Kvs[i-1].Key, bin.Kvs[i].Key) >= 0 {
			t.Errorf("prefix range /bin/ out of byte order at %d: %q then %q", i, bin.Kvs[i-1].Key, bin.Kvs[i].Key)
		}
	}

	st.atRev = map[int64][]string{}
	for _, r := range revs {
		g, err := c.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(r))
		if err != nil {
			t.Fatalf("read at revision %d: %v", r, err)
		}
		st.atRev[r] = kvsString(g.Kvs)
	}
	if _, err := c.Get(ctx, "Route1", clientv3.WithRev(compactRev-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("read at revision %d, below the compact revision %d: %v, want %v", compactRev-1, compactRev, err, rpctypes.ErrCompacted)
	}

	// Every event since the compact revision, from a watch.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wch := c.Watch(wctx, "", clientv3.WithPrefix(), clientv3.WithRev(compactRev))
	timeout := time.After(10 * time.Second)
	var last int64
	for i := 0; i < 100000 && last < st.rev; i++ {
		select {
		case resp, ok := <-wch:
			if !ok || resp.Canceled {
				t.Fatalf("watch from the compact revision %d ended at %d: %v (compact revision %d)", compactRev, last, resp.Err(), resp.CompactRevision)
			}
			for _, ev := range resp.Events {
				st.history = append(st.history, evString(ev))
				last = ev.Kv.ModRevision
			}
		case <-timeout:
			t.Fatalf("watch from the compact revision %d: at %d after 10 s, want %d", compactRev, last, st.rev)
		}
	}
	if len(st.history) == 0 || !strings.HasPrefix(st.history[0], fmt.Sprintf("@%d ", compactRev)) {
		t.Errorf("watch from the compact revision %d starts with %q", compactRev, st.history[:min(1, len(st.history))])
	}

	ls, err := c.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.leases = map[int64]rebuildLease{}
	for _, l := range ls.Leases {
		ttl, err := c.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, k := range ttl.Keys {
			keys = append(keys, string(k))
		}
		sort.Strings(keys)
		st.leases[int64(l.ID)] = rebuildLease{granted: ttl.GrantedTTL, keys: keys}
	}
	return st
}
