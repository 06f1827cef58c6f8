package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/etcdsql/etcdsql/internal/freeport"
	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
)

// peerClient dials a member's peer port as anyone could, the way members
// do: TLS (when cfg is set) under gRPC, not negotiated by it.
func peerClient(t *testing.T, addr string, cfg *tls.Config) *rpc.PeerClient {
	t.Helper()
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || cfg == nil {
			return c, err
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, append(rpc.PeerDialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return rpc.NewPeerClient(cc)
}

// The peer port serves members only: without a certificate, or with one
// derived from another key, a call is refused and writes nothing; with the
// cluster's key it is answered.
func TestPeerPortRefusesStrangers(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.Leader(10 * time.Second)
	addr := c.Members[leader].PeerAddr
	cl := c.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := fingerprint(t, cl)

	wrong, err := node.ClusterKeyTLS([]byte("not the cluster's key, but long enough"))
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"no certificate": nil, "another key": wrong} {
		pc := peerClient(t, addr, cfg)
		callCtx, callCancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := pc.Put(callCtx, &pb.PutRequest{Key: []byte("/apisix/routes/evil"), Value: []byte(`{"uri":"/*"}`)})
		callCancel()
		if err == nil {
			t.Fatalf("%s: a put through the peer port was accepted", name)
		}
		if _, err := pc.Status(ctx); err == nil {
			t.Fatalf("%s: the peer service answered", name)
		}
	}
	if after := fingerprint(t, cl); after != before {
		t.Fatalf("the key space changed:\nbefore %s\nafter  %s", before, after)
	}

	right, err := node.ClusterKeyTLS([]byte(testcluster.ClusterKey))
	if err != nil {
		t.Fatal(err)
	}
	st, err := peerClient(t, addr, right).Status(ctx)
	if err != nil {
		t.Fatalf("a member's call was refused: %v", err)
	}
	if st.Header.MemberId != node.MemberID(c.Members[leader].Name) {
		t.Fatalf("status answered as member %x", st.Header.MemberId)
	}
}

// stranger runs an etcdsql process that tries to join the cluster through
// gossip with the flags given; it is killed when the test ends. The
// returned channel is closed if it exits.
func stranger(t *testing.T, name, join string, flags ...string) <-chan struct{} {
	t.Helper()
	ports, err := freeport.Ports(3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := append([]string{
		"--name", name, "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", "http://127.0.0.1:" + strconv.Itoa(ports[0]),
		"--listen-peer-urls", "http://127.0.0.1:" + strconv.Itoa(ports[1]),
		"--gossip-addr", "127.0.0.1:" + strconv.Itoa(ports[2]), "--join", join, "--log-level", "info",
	}, flags...)
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testserver.Build(t), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s's log:\n%s", name, b)
		}
	})
	return exited
}

// A process that reaches a member's gossip port without the cluster key
// (another key, or none at all on a network it claims is trusted) is never
// seen, so never added to raft.
func TestStrangerWithoutTheKeyNeverJoins(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	keyFile := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(keyFile, []byte("a key of somebody else's cluster\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gone := []<-chan struct{}{
		stranger(t, "stranger-key", c.Members[0].GossipAddr, "--cluster-key-file", keyFile),
		stranger(t, "stranger-plain", c.Members[1].GossipAddr, "--trusted-peer-network"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.Client(0)
	// Long enough for several joins and reconciliations (each second).
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ms, _ := members(t, ctx, cl); len(ms) != 3 {
			t.Fatalf("a stranger was added: %v", ms)
		}
	}
	for i, ch := range gone {
		select {
		case <-ch:
			t.Fatalf("stranger %d exited: it did not try to join", i)
		default:
		}
	}
	if _, err := cl.Put(ctx, "still", "writable"); err != nil {
		t.Fatal(err)
	}
}

// A member with the key, beyond the voter count the cluster was formed
// with, replicates as a non-voter and is never promoted; killing it leaves
// writes working, and the survivors can remove it.
func TestMemberBeyondVoterCountStaysNonvoter(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := c.Client(0)
	if _, err := cl.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	n4 := c.Add(false)
	name4 := c.Members[n4].Name
	waitFor(t, ctx, "the fourth member added", func() bool {
		ms, _ := members(t, ctx, cl)
		_, ok := ms[name4]
		return ok
	})
	waitFor(t, ctx, "the fourth member serving reads", func() bool {
		g, err := c.Client(n4).Get(ctx, "k")
		return err == nil && len(g.Kvs) == 1
	})
	// Caught up: a voter would now be promoted within a reconciliation.
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if ms, _ := members(t, ctx, cl); !ms[name4] {
			t.Fatalf("the fourth member was promoted beyond the three voters: %v", ms)
		}
	}
	c.Crash(n4)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := cl.Put(wctx, "after", "crash"); err != nil {
		t.Fatalf("write after the non-voter died: %v", err)
	}
	if _, err := cl.MemberRemove(ctx, node.MemberID(name4)); err != nil {
		t.Fatalf("member remove: %v", err)
	}
	waitFor(t, ctx, "the fourth member removed", func() bool {
		ms, _ := members(t, ctx, cl)
		_, ok := ms[name4]
		return !ok && len(ms) == 3
	})
}
