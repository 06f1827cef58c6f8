package upgradetest

import (
	"context"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
	"github.com/etcdsql/etcdsql/internal/haproxytest"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/release"
)

// gateways is how many APISIX data planes watch the cluster.
const gateways = 200

// TestRollingUpgradeAndRollback: three members of v0.1.0 on MariaDB serve
// 200 APISIX data planes (half through HAProxy, half listing the three
// members), an Admin API writer and a clientv3 writer. Each member is
// replaced by the current build in turn (SIGTERM, the new binary on the
// same data dir and ports; followers first, the leader last, handing its
// leadership over), then the cluster is rolled back to v0.1.0 the same
// way. Nothing may notice: no acknowledged write lost (the cluster and the
// database end equal to the truth), no Admin write failed, every gateway
// received every event once and in order, none reloaded, and no header
// revision went backwards. After each step the members of this release
// report the cluster version the oldest member allows. The longest gap
// without a successful write and the longest delivery delay are reported.
func TestRollingUpgradeAndRollback(t *testing.T) {
	if raceEnabled {
		t.Skip("a real-process scale run: it runs in the plain (non-race) pass of make test")
	}
	if testing.Short() {
		t.Skip("-short: a rolling upgrade and rollback under load takes about 100 s")
	}
	old := Binary{Release: firstRelease, Path: Release(t, firstRelease)}
	// The current build refuses a cluster without peer authentication
	// unless told the network is trusted; v0.1.0 has none (operations.md,
	// "Upgrading from v0.1.0").
	cur := Binary{Release: release.Name, Path: Current(t), Extra: []string{"--trusted-peer-network"}}
	dsn := mysqltest.NewDatabase(t)
	c := StartCluster(t, 3, old, dsn)
	if _, err := c.WaitHealthy(time.Minute); err != nil {
		t.Fatal(err)
	}
	lb := haproxytest.Start(t, c.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The Admin API lists the members itself.
	adminCli := newSimClient(t, c.Endpoints(), 1)
	if err := apisixsim.CheckVersions(ctx, adminCli); err != nil {
		t.Fatalf("apisix start: %v", err)
	}
	if err := apisixsim.InitDir(ctx, adminCli); err != nil {
		t.Fatalf("apisix start: %v", err)
	}
	f := startFleet(t, ctx, gateways, lb, c.Endpoints())
	kvCli, err := newClient(c.Endpoints()...)
	if err != nil {
		t.Fatal(err)
	}
	defer kvCli.Close()
	l := startLoad(ctx, apisixsim.NewAdmin(adminCli), kvCli)
	defer l.halt()

	// The writers get going on the v0.1.0 cluster first.
	if err := l.waitAcks(10, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	steps := rollTo(t, c, cur)
	steps = append(steps, rollTo(t, c, old)...)
	if _, err := c.WaitHealthy(healthyWithin); err != nil {
		t.Fatalf("after the rollback: %v", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the load ran out of time (%v) before the rollback ended", ctx.Err())
	}
	l.halt()
	t.Logf("%d steps in %v", len(steps), time.Since(begin).Round(time.Millisecond))

	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ccancel()
	checkAdmin(t, l.admin, steps)
	checkKV(t, cctx, kvCli, dsn, l.kv, steps)
	hist := checkFleet(t, cctx, kvCli, adminCli, f)
	reportGaps(t, l, steps)
	reportDelivery(t, f, hist, l.admin, steps)
}

// newSimClient is an APISIX etcd client of the given hosts (maxFails 1 is
// the Admin API's, 3 the data plane's), closed when the test ends.
func newSimClient(t *testing.T, eps []string, maxFails int) *apisixsim.Client {
	t.Helper()
	c, err := apisixsim.NewClient(apisixsim.ClientConfig{Endpoints: eps, Seed: 1, MaxFails: maxFails, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
