package etcdimport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/etcdimport"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

const importRefusal = "etcdserver: import in progress: writes are refused until `etcdsql import --finish`"

// writeAPISIX writes what APISIX's Admin API writes for a small
// deployment into etcd: upstreams, routes (some with ?ttl=, on leases),
// consumers with credentials, overwrites and deletes.
func writeAPISIX(t *testing.T, etcdURL string, n int) {
	t.Helper()
	cli, err := apisixsim.NewClient(apisixsim.ClientConfig{Endpoints: []string{etcdURL}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	admin := apisixsim.NewAdmin(cli)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must := func(r apisixsim.AdminResult, err error) {
		t.Helper()
		if err != nil || r.Status >= 300 {
			t.Fatalf("admin: status %d %s: %v", r.Status, r.Message, err)
		}
	}
	for i := 0; i < n; i++ {
		up := fmt.Sprintf("u%d", i)
		must(admin.Put(ctx, "upstreams", up, map[string]any{"type": "roundrobin", "nodes": map[string]any{fmt.Sprintf("10.0.0.%d:80", i%250): 1}}, 0))
		ttl := 0
		if i%4 == 0 {
			ttl = 300 + i
		}
		must(admin.Put(ctx, "routes", fmt.Sprintf("r%d", i), map[string]any{"uri": fmt.Sprintf("/api/%d/*", i), "upstream_id": up}, ttl))
		must(admin.Put(ctx, "consumers", fmt.Sprintf("c%d", i), map[string]any{"username": fmt.Sprintf("c%d", i)}, 0))
		must(admin.Put(ctx, fmt.Sprintf("consumers/c%d/credentials", i), "key", map[string]any{"plugins": map[string]any{"key-auth": map[string]any{"key": fmt.Sprintf("secret-%d", i)}}}, 0))
	}
	for i := 0; i < n; i += 3 {
		must(admin.Patch(ctx, "routes", fmt.Sprintf("r%d", i), map[string]any{"desc": "patched"}, 0))
		must(admin.Put(ctx, "upstreams", fmt.Sprintf("u%d", i), map[string]any{"type": "chash", "nodes": map[string]any{"10.1.0.1:80": 1}}, 0))
	}
	for i := 1; i < n; i += 5 {
		must(admin.Delete(ctx, "routes", fmt.Sprintf("r%d", i)))
		must(admin.Delete(ctx, fmt.Sprintf("consumers/c%d/credentials", i), "key"))
	}
}

// rangeAll reads every key of c.
func rangeAll(t *testing.T, c *clientv3.Client) *clientv3.GetResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func kvLine(kv *mvccpb.KeyValue) string {
	return fmt.Sprintf("%q=%q create=%d mod=%d ver=%d lease=%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

// sameKeys fails unless a and b hold the same keys, each with the same
// value, revisions, version and lease, at the same revision.
func sameKeys(t *testing.T, what string, a, b *clientv3.GetResponse) {
	t.Helper()
	if a.Header.Revision != b.Header.Revision {
		t.Errorf("%s: revision %d, want %d", what, b.Header.Revision, a.Header.Revision)
	}
	if len(a.Kvs) != len(b.Kvs) {
		t.Fatalf("%s: %d keys, want %d", what, len(b.Kvs), len(a.Kvs))
	}
	for i := range a.Kvs {
		if got, want := kvLine(b.Kvs[i]), kvLine(a.Kvs[i]); got != want {
			t.Fatalf("%s: key %d: %s, want %s", what, i, got, want)
		}
	}
}

// sameLeases fails unless both sides have the same leases, granted with
// the same TTL, with remaining TTLs within slack of each other.
func sameLeases(t *testing.T, src, dst *clientv3.Client, slack int64) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := func(c *clientv3.Client) []clientv3.LeaseID {
		resp, err := c.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []clientv3.LeaseID
		for _, l := range resp.Leases {
			out = append(out, l.ID)
		}
		sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
		return out
	}
	a, b := ids(src), ids(dst)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("leases %v, want %v", b, a)
	}
	for _, id := range a {
		la, err := src.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		lb, err := dst.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		// etcd lists a lease's keys in no particular order (a map's).
		for _, keys := range [][][]byte{la.Keys, lb.Keys} {
			sort.Slice(keys, func(i, j int) bool { return bytes.Compare(keys[i], keys[j]) < 0 })
		}
		if la.GrantedTTL != lb.GrantedTTL || lb.TTL > la.TTL+slack || lb.TTL < la.TTL-slack || fmt.Sprint(la.Keys) != fmt.Sprint(lb.Keys) {
			t.Fatalf("lease %x: granted %d ttl %d keys %q, want granted %d ttl %d keys %q", id, lb.GrantedTTL, lb.TTL, lb.Keys, la.GrantedTTL, la.TTL, la.Keys)
		}
	}
	return len(a)
}

func runImport(t *testing.T, src, dst *clientv3.Client, cfg etcdimport.Config) etcdimport.Summary {
	t.Helper()
	cfg.Source, cfg.Target = &etcdimport.EtcdSource{C: src}, dst.ActiveConnection()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sum, err := etcdimport.Run(ctx, cfg)
	if err != nil {
		t.Fatalf("import: %v (%v)", err, sum)
	}
	t.Log(sum)
	return sum
}

// wantRefused fails unless a client write is refused as an import refuses
// it: FailedPrecondition with the import's text.
func wantRefused(t *testing.T, err error) {
	t.Helper()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), importRefusal) {
		t.Fatalf("write while importing: %v, want FailedPrecondition %q", err, importRefusal)
	}
}

// Acceptance 1: APISIX's data in a real etcd 3.4, overwritten, deleted and
// compacted, imported into three members on MariaDB: every key, value,
// revision, version and lease equal to etcd's. In the middle the cluster
// is rebuilt from the database (import mode and all), and the import
// resumed and finished from there.
func TestImportAPISIXData(t *testing.T) {
	etcdURL := difftest.StartEtcd(t)
	writeAPISIX(t, etcdURL, 40)
	src := testserver.NewClient(t, etcdURL)
	ctx := context.Background()
	head := rangeAll(t, src).Header.Revision
	if _, err := src.Compact(ctx, head-20); err != nil {
		t.Fatal(err)
	}

	dsn := mysqltest.NewDatabase(t)
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	dst := c.Client()
	sum := runImport(t, src, dst, etcdimport.Config{PageKeys: 7})
	if sum.Finished || sum.Base != head {
		t.Fatalf("summary %+v: want a copy at revision %d, not finished", sum, head)
	}
	sameKeys(t, "after the copy", rangeAll(t, src), rangeAll(t, dst))
	if _, err := dst.Get(ctx, "/apisix/routes/r0", clientv3.WithRev(head-1)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("read below the copy's revision: %v, want compacted", err)
	}

	// Writes are refused (a 4xx on the gateway), reads and watches served.
	_, err := dst.Put(ctx, "/apisix/routes/x", "{}")
	wantRefused(t, err)
	_, err = dst.Grant(ctx, 10)
	wantRefused(t, err)
	resp, err := http.Post(c.Members[1].URL+"/v3/kv/put", "application/json", strings.NewReader(`{"key":"eA==","value":"eA=="}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Fatalf("gateway put while importing: status %d, want 4xx", resp.StatusCode)
	}

	// Etcd moves on; the cluster is rebuilt from the database and the
	// import resumes from there.
	writeAPISIX(t, etcdURL, 8)
	c.Close()
	c2 := testcluster.Start(t, testcluster.Options{MySQLDSN: dsn})
	dst2 := c2.Client()
	_, err = dst2.Put(ctx, "/apisix/routes/x", "{}")
	wantRefused(t, err)
	sum = runImport(t, src, dst2, etcdimport.Config{Finish: true})
	if !sum.Resumed || !sum.Finished || sum.Revs == 0 {
		t.Fatalf("summary %+v: want a resumed import that applied revisions and finished", sum)
	}
	want := rangeAll(t, src)
	for i := range c2.Members {
		sameKeys(t, fmt.Sprintf("member %d", i), want, rangeAll(t, c2.Client(i)))
	}
	if n := sameLeases(t, src, dst2, 3); n < 10 {
		t.Fatalf("%d leases compared, want the ?ttl= routes' (12)", n)
	}
	// Open for writes, from etcd's next revision.
	put, err := dst2.Put(ctx, "/apisix/routes/after", "{}")
	if err != nil || put.Header.Revision != want.Header.Revision+1 {
		t.Fatalf("first write after the import: %v at revision %v, want %d", err, put, want.Header.Revision+1)
	}
}

// With --follow, every revision etcd applies while writers run arrives at
// the same number with the same events; stopping the follow finishes at
// etcd's last revision.
func TestImportFollow(t *testing.T) {
	etcdURL := difftest.StartEtcd(t)
	src := testserver.NewClient(t, etcdURL)
	ctx := context.Background()
	lease, err := src.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if _, err := src.Put(ctx, fmt.Sprintf("/k/%03d", i), "v0"); err != nil {
			t.Fatal(err)
		}
	}
	c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.NewDatabase(t)})
	dst := c.Client()

	stop := make(chan struct{})
	var progress bytes.Buffer // written by Run's progress goroutine, read after Run
	var sum etcdimport.Summary
	var runErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		sum, runErr = etcdimport.Run(rctx, etcdimport.Config{Source: &etcdimport.EtcdSource{C: src}, Target: dst.ActiveConnection(), Follow: true, Stop: stop,
			Progress: &progress, ProgressEvery: 100 * time.Millisecond})
	}()
	// Writers: puts, overwrites, puts on leases granted along the way,
	// deletes, transactions and a revoke, bounded in count.
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 150; i++ {
				k := fmt.Sprintf("/k/%03d", (i*7+w*13)%60)
				var err error
				switch i % 6 {
				case 0, 1:
					_, err = src.Put(ctx, k, fmt.Sprintf("w%d-%d", w, i))
				case 2:
					_, err = src.Put(ctx, k, "leased", clientv3.WithLease(lease.ID))
				case 3:
					_, err = src.Delete(ctx, k)
				case 4:
					l, gerr := src.Grant(ctx, int64(100+i))
					if gerr == nil {
						_, err = src.Put(ctx, k, "new lease", clientv3.WithLease(l.ID))
					}
				case 5:
					_, err = src.Txn(ctx).Then(clientv3.OpPut("/t"+k+"/a", "1"), clientv3.OpPut("/t"+k+"/b", "2"), clientv3.OpDelete(k)).Commit()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if _, err := src.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	// Reads follow etcd while the import runs.
	etcdRev := rangeAll(t, src).Header.Revision
	deadline := time.Now().Add(30 * time.Second)
	for rangeAll(t, dst).Header.Revision < etcdRev {
		select {
		case <-done:
			t.Fatalf("follow ended before revision %d: %v (%v)", etcdRev, runErr, sum)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("follow did not reach revision %d", etcdRev)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-done
	if runErr != nil || !sum.Finished || sum.Rev != etcdRev {
		t.Fatalf("follow: %v, %+v; want finished at %d", runErr, sum, etcdRev)
	}
	if p := progress.String(); !strings.Contains(p, "revisions, revision ") || !strings.Contains(p, "behind etcd") {
		t.Errorf("progress lines: %q", p)
	}
	sameKeys(t, "after the follow", rangeAll(t, src), rangeAll(t, dst))
	sameLeases(t, src, dst, 3)
	// Every revision after the copy: the same events.
	wa, wb := watchAll(t, src, sum.Base+1, etcdRev), watchAll(t, dst, sum.Base+1, etcdRev)
	if len(wa) != len(wb) || len(wa) < 200 {
		t.Fatalf("%d events from etcdsql, %d from etcd", len(wb), len(wa))
	}
	for i := range wa {
		if wa[i] != wb[i] {
			t.Fatalf("event %d: %s, want %s", i, wb[i], wa[i])
		}
	}
}

// watchAll returns every event in (from, to] as lines.
func watchAll(t *testing.T, c *clientv3.Client, from, to int64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for resp := range c.Watch(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			out = append(out, ev.Type.String()+" "+kvLine(ev.Kv))
			if ev.Kv.ModRevision == to {
				// Events of one revision come together.
				if last := resp.Events[len(resp.Events)-1]; last.Kv.ModRevision == to {
					return out
				}
			}
		}
	}
	t.Fatalf("watch ended before revision %d", to)
	return nil
}

// Acceptance 4: the refusals, each with its message, the target unchanged
// or still closed for writes; an interrupted import resumes.
func TestImportErrors(t *testing.T) {
	etcdURL := difftest.StartEtcd(t)
	src := testserver.NewClient(t, etcdURL)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		if _, err := src.Put(ctx, fmt.Sprintf("/e/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	run := func(dst *clientv3.Client, cfg etcdimport.Config, rctx context.Context) (etcdimport.Summary, error) {
		cfg.Source, cfg.Target = &etcdimport.EtcdSource{C: src}, dst.ActiveConnection()
		return etcdimport.Run(rctx, cfg)
	}

	t.Run("non-empty target", func(t *testing.T) {
		dst := testserver.NewClient(t, testserver.Start(t).URL)
		if _, err := dst.Put(ctx, "/mine", "1"); err != nil {
			t.Fatal(err)
		}
		_, err := run(dst, etcdimport.Config{}, ctx)
		if !errors.Is(err, etcdimport.ErrTargetNotEmpty) || err.Error() != "the target cluster is not empty: it is at revision 2; import into a new cluster" {
			t.Fatalf("import into a written cluster: %v", err)
		}
		if resp := rangeAll(t, dst); len(resp.Kvs) != 1 || resp.Header.Revision != 2 {
			t.Fatalf("target changed: %v", resp)
		}
	})

	t.Run("interrupted and resumed", func(t *testing.T) {
		dst := testserver.NewClient(t, testserver.Start(t).URL)
		rctx, cancel := context.WithCancel(ctx)
		cfg := etcdimport.Config{PageKeys: 2, Finish: true}
		// Cut the run short once part of the key space is in.
		go func() {
			defer cancel()
			for {
				if r, err := dst.Get(ctx, "/e/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err == nil && r.Count >= 4 {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		_, err := run(dst, cfg, rctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted import: %v", err)
		}
		_, err = dst.Put(ctx, "/mine", "1")
		wantRefused(t, err)
		if _, err := run(dst, cfg, ctx); err != nil {
			t.Fatalf("resumed import: %v", err)
		}
		sameKeys(t, "after the resume", rangeAll(t, src), rangeAll(t, dst))
	})

	t.Run("compacted past the follow point, then restarted", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		srv := testserver.Start(t, testserver.WithMySQL(dsn))
		dst := testserver.NewClient(t, srv.URL)
		if _, err := run(dst, etcdimport.Config{}, ctx); err != nil {
			t.Fatal(err)
		}
		at := rangeAll(t, dst).Header.Revision
		for i := 0; i < 3; i++ {
			if _, err := src.Put(ctx, "/e/later", fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := src.Compact(ctx, at+2); err != nil {
			t.Fatal(err)
		}
		_, err := run(dst, etcdimport.Config{Finish: true}, ctx)
		want := fmt.Sprintf("etcd has compacted a revision the import needs: etcd is compacted up to revision %d, the import needs revision %d", at+2, at+1)
		if !errors.Is(err, etcdimport.ErrCompacted) || err.Error() != want {
			t.Fatalf("follow past compaction: %v, want %q", err, want)
		}
		_, err = dst.Put(ctx, "/mine", "1")
		wantRefused(t, err)
		if r := rangeAll(t, dst); r.Header.Revision != at {
			t.Fatalf("target moved to %d from %d", r.Header.Revision, at)
		}
		// Another etcd cluster is refused; --restart wipes and starts
		// over from the current etcd.
		other := testserver.NewClient(t, difftest.StartEtcd(t))
		if _, err := other.Put(ctx, "/other", "1"); err != nil {
			t.Fatal(err)
		}
		_, err = etcdimport.Run(ctx, etcdimport.Config{Source: &etcdimport.EtcdSource{C: other}, Target: dst.ActiveConnection()})
		if !errors.Is(err, etcdimport.ErrOtherSource) {
			t.Fatalf("import from another etcd: %v", err)
		}
		sum, err := run(dst, etcdimport.Config{Restart: true, Finish: true}, ctx)
		if err != nil || !sum.Finished {
			t.Fatalf("restart: %v (%v)", err, sum)
		}
		after := rangeAll(t, src)
		sameKeys(t, "after the restart", after, rangeAll(t, dst))
		// The database holds the new copy only: a member rebuilt from it
		// has the same keys.
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		rebuilt := testserver.NewClient(t, testserver.Start(t, testserver.WithMySQL(dsn)).URL)
		sameKeys(t, "rebuilt from the database", after, rangeAll(t, rebuilt))
	})
}

// With authentication on in the target, only its root user may import.
func TestImportTargetAuth(t *testing.T) {
	etcdURL := difftest.StartEtcd(t)
	src := testserver.NewClient(t, etcdURL)
	ctx := context.Background()
	if _, err := src.Put(ctx, "/a", "1"); err != nil {
		t.Fatal(err)
	}
	srv := testserver.Start(t)
	admin := testserver.NewClient(t, srv.URL)
	for _, step := range []func() error{
		func() error { _, err := admin.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.UserAdd(ctx, "alice", "alicepw"); return err },
		func() error { _, err := admin.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user, password string) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.URL}, Username: user, Password: password, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	_, err := etcdimport.Run(ctx, etcdimport.Config{Source: &etcdimport.EtcdSource{C: src}, Target: as("alice", "alicepw").ActiveConnection(), Finish: true})
	if err == nil || err.Error() != "target: etcdserver: permission denied" {
		t.Fatalf("import as a user without the root role: %v", err)
	}
	root := as("root", "rootpw")
	if sum, err := etcdimport.Run(ctx, etcdimport.Config{Source: &etcdimport.EtcdSource{C: src}, Target: root.ActiveConnection(), Finish: true}); err != nil || !sum.Finished {
		t.Fatalf("import as root: %v (%v)", err, sum)
	}
	sameKeys(t, "imported as root", rangeAll(t, src), rangeAll(t, root))
}

// While importing, the target's lease clock expires nothing (etcd decides);
// at the finish each lease runs from what it has left at etcd.
func TestImportLeaseClock(t *testing.T) {
	etcdURL := difftest.StartEtcd(t)
	src := testserver.NewClient(t, etcdURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := src.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Put(ctx, "/leased", "1", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := src.KeepAlive(ctx, l.ID) // etcd keeps it; nothing renews it on the target
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	dst := testserver.NewClient(t, testserver.Start(t).URL)
	runImport(t, src, dst, etcdimport.Config{})
	time.Sleep(5 * time.Second) // past the lease's 3 s: the target must not expire it
	if r := rangeAll(t, dst); len(r.Kvs) != 1 {
		t.Fatalf("the target expired an imported lease while importing: %v", r.Kvs)
	}
	_, err = dst.KeepAliveOnce(ctx, l.ID)
	wantRefused(t, err)
	runImport(t, src, dst, etcdimport.Config{Finish: true})
	ttl, err := dst.TimeToLive(ctx, l.ID)
	if err != nil {
		t.Fatal(err)
	}
	// What etcd had left (whole seconds, rounded down as etcd and
	// etcdsql both answer) may be 1 on a busy machine, which reads as 0
	// a moment later; -1 would mean the lease is gone.
	if ttl.GrantedTTL != 3 || ttl.TTL > 3 || ttl.TTL < 0 {
		t.Fatalf("lease after the finish: TTL %d, granted %d, want granted 3 and 0 to 3 left", ttl.TTL, ttl.GrantedTTL)
	}
	// Nothing renews it on the target: it expires within its TTL.
	deadline := time.Now().Add(10 * time.Second)
	for len(rangeAll(t, dst).Kvs) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the imported lease did not expire after the finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
