package etcdimport_test

import (
	"context"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/etcdimport"
	"github.com/etcdsql/etcdsql/internal/faultproxy"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// adminWrites makes n Admin operations (creates with and without ?ttl=,
// patches, deletes) on routes ids[from:], paced, and fails the test on an
// error.
func adminWrites(t *testing.T, admin *apisixsim.Admin, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := from; i < from+n; i++ {
		id := fmt.Sprintf("cut%d", i%40)
		var r apisixsim.AdminResult
		var err error
		switch i % 5 {
		case 0, 1:
			r, err = admin.Put(ctx, "routes", id, map[string]any{"uri": fmt.Sprintf("/c/%d", i)}, 0)
		case 2:
			r, err = admin.Put(ctx, "routes", id, map[string]any{"uri": fmt.Sprintf("/t/%d", i)}, 600)
		case 3:
			r, err = admin.Patch(ctx, "routes", id, map[string]any{"desc": fmt.Sprint(i)}, 0)
		case 4:
			r, err = admin.Delete(ctx, "routes", id)
		}
		if err != nil || (r.Status >= 300 && r.Status != 404) {
			t.Errorf("admin op %d: status %d %s: %v", i, r.Status, r.Message, err)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Acceptance 2: 50 gateways watch etcd through a load balancer while an
// Admin writer writes to etcd and the import follows; the writer stops,
// the follow catches up and finishes, the load balancer switches to
// etcdsql, the writer goes on there. No gateway reloads, none misses or
// repeats an event, every gateway's tables equal the truth.
func TestImportCutover(t *testing.T) {
	const gateways = 50
	etcdURL := difftest.StartEtcd(t)
	writeAPISIX(t, etcdURL, 20)
	u, _ := url.Parse(etcdURL)
	lb := faultproxy.New(t, u.Host)
	newClient := func() *apisixsim.Client {
		c, err := apisixsim.NewClient(apisixsim.ClientConfig{Endpoints: []string{"http://" + lb.Addr()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	ctx := context.Background()

	var mu sync.Mutex
	events := make([][]string, gateways)
	starts := make([]int64, gateways)
	dps := make([]*apisixsim.DataPlane, gateways)
	for i := range dps {
		dp, err := apisixsim.StartDataPlane(ctx, apisixsim.DataPlaneConfig{
			Client: newClient(),
			OnEvents: func(_ int, _, _ int64, evs []apisixsim.Event) {
				mu.Lock()
				defer mu.Unlock()
				for _, ev := range evs {
					events[i] = append(events[i], fmt.Sprintf("%d %s %v", ev.ModRevision, ev.Key, ev.Delete))
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		starts[i] = dp.Revision()
		t.Cleanup(dp.Close)
		dps[i] = dp
	}

	c := testcluster.Start(t, testcluster.Options{MySQLDSN: mysqltest.NewDatabase(t)})
	t.Cleanup(func() { // before the members stop
		for _, dp := range dps {
			dp.Close()
		}
	})
	src, dst := testserver.NewClient(t, etcdURL), c.Client()
	stop := make(chan struct{})
	done := make(chan error, 1)
	var sum etcdimport.Summary
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		var err error
		sum, err = etcdimport.Run(rctx, etcdimport.Config{Source: &etcdimport.EtcdSource{C: src}, Target: dst.ActiveConnection(), Follow: true, Stop: stop})
		done <- err
	}()

	admin := apisixsim.NewAdmin(newClient())
	adminWrites(t, admin, 0, 300)
	// The writer has stopped: the follow catches up and finishes.
	close(stop)
	if err := <-done; err != nil || !sum.Finished {
		t.Fatalf("follow: %v (%v)", err, sum)
	}
	t.Log(sum)
	cutRev := sum.Rev
	lb.Retarget(strings.TrimPrefix(c.Members[0].URL, "http://"))
	// The Admin API is switched too (restarted: its old connection was
	// to etcd).
	adminWrites(t, apisixsim.NewAdmin(newClient()), 300, 100)

	truthClient, err := apisixsim.NewClient(apisixsim.ClientConfig{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer truthClient.Close()
	truth, rev, err := apisixsim.LoadTables(ctx, truthClient)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= cutRev {
		t.Fatalf("no write reached etcdsql after the cutover (revision %d, cut at %d)", rev, cutRev)
	}
	deadline := time.Now().Add(60 * time.Second)
	for i, dp := range dps {
		for dp.Revision() < rev {
			if time.Now().After(deadline) {
				t.Fatalf("gateway %d at revision %d, want %d", i, dp.Revision(), rev)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The truth of the events: etcdsql's history, which after the
	// import's base is etcd's.
	want := watchPrefix(t, dst, starts[0]+1, rev)
	mu.Lock()
	defer mu.Unlock()
	for i, dp := range dps {
		if n := dp.Reloads(); n != 0 {
			t.Errorf("gateway %d: %d full reloads", i, n)
		}
		if a := dp.Anomalies(); len(a) != 0 {
			t.Errorf("gateway %d: anomalies %v", i, a)
		}
		if !reflect.DeepEqual(dp.Tables(), truth) {
			t.Errorf("gateway %d: tables differ from the truth", i)
		}
		if starts[i] != starts[0] {
			t.Fatalf("gateway %d loaded at revision %d, gateway 0 at %d", i, starts[i], starts[0])
		}
		if fmt.Sprint(events[i]) != fmt.Sprint(want) {
			t.Errorf("gateway %d: %d events, want %d (a missed or repeated event)", i, len(events[i]), len(want))
		}
	}
	if len(want) < 200 {
		t.Fatalf("only %d events", len(want))
	}
}

// watchPrefix returns the events under APISIX's prefix in [from, to] as
// the gateways record them.
func watchPrefix(t *testing.T, c *clientv3.Client, from, to int64) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []string
	for resp := range c.Watch(ctx, apisixsim.Prefix, clientv3.WithPrefix(), clientv3.WithRev(from)) {
		if err := resp.Err(); err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			out = append(out, fmt.Sprintf("%d %s %v", ev.Kv.ModRevision, ev.Kv.Key, ev.Type == mvccpb.DELETE))
		}
		if resp.Header.Revision >= to && len(resp.Events) > 0 && resp.Events[len(resp.Events)-1].Kv.ModRevision >= to {
			return out
		}
	}
	t.Fatalf("watch ended before revision %d", to)
	return nil
}
