package apisixsim

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// TestAuthenticated: APISIX configured with etcd.user and etcd.password
// against etcd 3.4 and a three-member cluster whose hosts it round-robins:
// start, an Admin PUT, the data plane sees it, no anomaly; a client
// without credentials is refused with the text APISIX recognises.
func TestAuthenticated(t *testing.T) {
	for _, tg := range []target{targets[0], targets[3]} {
		t.Run(tg.name, func(t *testing.T) {
			e := tg.start(t)
			testAuthenticated(t, e)
			checkNoSimGoroutines(t)
		})
	}
}

func testAuthenticated(t *testing.T, e env) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	enableAuth(t, ctx, e.eps)
	authed := func(seed int64, maxFails int) *Client {
		c, err := NewClient(ClientConfig{Endpoints: e.eps, Seed: seed, MaxFails: maxFails, FailTimeout: 2 * time.Second,
			Timeout: 10 * time.Second, User: "apisix", Password: "apisixpw"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	cli := authed(1, 1)
	apisixStart(t, ctx, cli)
	dp := startDP(t, authed(2, 3), DefaultWatchTimeout)
	admin := NewAdmin(authed(3, 1))
	for i := 0; i < 2*len(e.eps); i++ { // every host takes the one token
		route := map[string]any{"uri": "/auth", "upstream": map[string]any{"type": "roundrobin", "nodes": map[string]any{"127.0.0.1:1980": i + 1}}}
		if put, err := admin.Put(ctx, "routes", "1", route, 0); err != nil || put.Status/100 != 2 {
			t.Fatalf("PUT /routes/1 with a token: %+v %v", put, err)
		}
	}
	waitConverged(t, ctx, cli, map[string]*DataPlane{"dp": dp})
	checkSim(t, "dp", dp)
	dp.Close()

	anon := newTestClient(t, 4, 1, e.eps...)
	_, _, err := anon.Range(ctx, Prefix+"/routes/1", "")
	var ee *EtcdError
	if !errors.As(err, &ee) || ee.Status != 400 || ee.Message != "etcdserver: user name is empty" {
		t.Errorf("a range without credentials: %v, want 400 etcdserver: user name is empty", err)
	}
}

// enableAuth makes root and apisix (READWRITE on the prefix) and enables
// authentication.
func enableAuth(t *testing.T, ctx context.Context, eps []string) {
	c := testserver.NewClient(t, eps...)
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.UserAdd(ctx, "apisix", "apisixpw"); return err },
		func() error { _, err := c.RoleAdd(ctx, "apisix"); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, "apisix", Prefix, clientv3.GetPrefixRangeEnd(Prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserGrantRole(ctx, "apisix", "apisix"); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("auth setup step %d: %v", i, err)
		}
	}
}
