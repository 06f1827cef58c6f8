package upgradetest

import (
	"context"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/release"
	"github.com/etcdsql/etcdsql/rpc"
)

// TestMixedVersionRefusesNewCalls: while a member of v0.1.0 remains, the
// calls this release introduced (users and roles, imports) are refused with etcd's
// "not capable", on a member of this release, as a follower and as the
// leader, and change nothing; once the last member runs this release they
// work, with no restart.
func TestMixedVersionRefusesNewCalls(t *testing.T) {
	if raceEnabled {
		t.Skip("real processes: it runs in the plain (non-race) pass of make test")
	}
	if testing.Short() {
		t.Skip("-short: three member replacements take about 40 s")
	}
	old := Binary{Release: firstRelease, Path: Release(t, firstRelease)}
	cur := Binary{Release: release.Name, Path: Current(t), Extra: []string{"--trusted-peer-network"}}
	c := StartCluster(t, 3, old, mysqltest.NewDatabase(t))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The two followers upgraded: the v0.1.0 leader stays.
	v, err := c.WaitHealthy(healthyWithin)
	if err != nil {
		t.Fatal(err)
	}
	last := v.Leader
	var upgraded []int
	for i := range c.Members {
		if i != last {
			replaceOne(t, c, i, cur, v)
			upgraded = append(upgraded, i)
			if v, err = c.WaitHealthy(healthyWithin); err != nil {
				t.Fatal(err)
			}
		}
	}
	refusedEverywhere(t, ctx, c, upgraded, "a v0.1.0 leader")

	// The v0.1.0 leader restarts (as v0.1.0) and hands over: a member of
	// this release leads, with a v0.1.0 follower.
	replaceOne(t, c, last, old, v)
	if v, err = c.WaitHealthy(healthyWithin); err != nil {
		t.Fatal(err)
	}
	if c.Members[v.Leader].Running.Release != release.Name {
		t.Fatalf("leader %s runs %s", c.Members[v.Leader].Name, c.Members[v.Leader].Running.Release)
	}
	refusedEverywhere(t, ctx, c, upgraded, "a v0.1.0 follower")

	// The last v0.1.0 member upgraded: the calls work without a restart.
	replaceOne(t, c, last, cur, v)
	cli, err := newClient(c.Members[last].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.UserAdd(ctx, "apisix", "secret"); err != nil {
		t.Fatalf("UserAdd once every member runs %s: %v", release.Name, err)
	}
	if _, err := cli.RoleAdd(ctx, "gateway"); err != nil {
		t.Fatalf("RoleAdd: %v", err)
	}
	for _, m := range c.Members {
		mc, err := newClient(m.URL)
		if err != nil {
			t.Fatal(err)
		}
		u, err := mc.UserGet(ctx, "apisix")
		mc.Close()
		if err != nil || u == nil {
			t.Fatalf("UserGet on %s: %v", m.Name, err)
		}
	}

	// Once the data holds users, v0.1.0 cannot take a member back: it
	// refuses the database's schema at start (operations.md, "Rollback
	// runbook").
	if err := c.Stop(last); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(last, old); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Alive(last) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if c.Alive(last) {
		t.Fatalf("v0.1.0 started on a database holding users; its log ends:\n%s", c.LogTail(last, 2000))
	}
	if tail := c.LogTail(last, 2000); !strings.Contains(tail, "database schema 2 is newer than this binary knows") {
		t.Fatalf("v0.1.0 stopped, but not on the schema; its log ends:\n%s", tail)
	}
}

// refusedEverywhere asks every member in members to add a user and a role,
// expects "not capable", and checks nothing changed.
func refusedEverywhere(t *testing.T, ctx context.Context, c *Cluster, members []int, while string) {
	t.Helper()
	for _, i := range members {
		m := c.Members[i]
		cli, err := newClient(m.URL)
		if err != nil {
			t.Fatal(err)
		}
		before, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		_, uerr := cli.UserAdd(ctx, "apisix", "secret")
		_, rerr := cli.RoleAdd(ctx, "gateway")
		for name, err := range map[string]error{"UserAdd": uerr, "RoleAdd": rerr} {
			if ee, ok := err.(rpctypes.EtcdError); !ok || ee.Code() != codes.FailedPrecondition || ee.Error() != "etcdserver: not capable" {
				t.Errorf("%s on %s with %s: %v, want %v", name, m.Name, while, err, rpctypes.ErrNotCapable)
			}
		}
		// An import (this release's entry kinds) likewise.
		ierr := cli.ActiveConnection().Invoke(ctx, "/"+rpc.ImportService+"/Begin", &pb.ResponseHeader{ClusterId: 1}, &pb.ResponseHeader{})
		if st := status.Convert(ierr); st.Code() != codes.FailedPrecondition || st.Message() != "etcdserver: not capable" {
			t.Errorf("import on %s with %s: %v, want %v", m.Name, while, ierr, rpctypes.ErrNotCapable)
		}
		users, err := cli.UserList(ctx)
		if err != nil || len(users.Users) != 0 {
			t.Errorf("users on %s after the refusals: %v %v", m.Name, users, err)
		}
		after, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
		if err != nil || after.Header.Revision != before.Header.Revision {
			t.Errorf("revision on %s went from %d to %v (%v) across the refusals", m.Name, before.Header.Revision, after, err)
		}
		cli.Close()
	}
}
