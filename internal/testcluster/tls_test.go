package testcluster

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/internal/testpki"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
)

// With PeerTLS (from files, as --peer-cert-file and friends give it), raft
// and forwarding run over mutual TLS, a peer without a certificate of the
// cluster's CA is turned away, and a member's replaced certificate files
// are what its next handshakes present.
func TestPeerMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "members")
	dir := t.TempDir()
	files := func(i int) (string, string) {
		return filepath.Join(dir, strconv.Itoa(i)+".crt"), filepath.Join(dir, strconv.Itoa(i)+".key")
	}
	install := func(i int, leaf *testpki.Leaf) {
		cert, key := files(i)
		for src, dst := range map[string]string{leaf.KeyFile: key, leaf.CertFile: cert} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst+".tmp", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(dst+".tmp", dst); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := Start(t, Options{Configure: func(i int, mc *node.MemberConfig) {
		install(i, ca.Issue(t, "member"))
		cert, key := files(i)
		cfg, err := rpc.ClientTLS{CertFile: cert, KeyFile: key, TrustedCAFile: ca.CertFile}.MutualConfig()
		if err != nil {
			t.Fatal(err)
		}
		mc.Node.PeerTLS = cfg
	}})
	leader := c.Leader(10 * time.Second)
	f := (leader + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Client(f).Put(ctx, "tls", "forwarded"); err != nil {
		t.Fatalf("write forwarded over mTLS: %v", err)
	}
	if g, err := c.Client((leader+2)%3).Get(ctx, "tls"); err != nil || len(g.Kvs) != 1 {
		t.Fatalf("read index over mTLS: %v %v", g, err)
	}
	foreign := testpki.NewCA(t, "foreign")
	other := foreign.MutualTLS(foreign.Issue(t, "member"))
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", c.Members[leader].PeerAddr, other)
	if err == nil {
		// TLS 1.3 reports a rejected client certificate on first read.
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("a peer with a foreign certificate was let in")
	}

	rotated := ca.Issue(t, "member")
	install(leader, rotated)
	conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", c.Members[leader].PeerAddr, ca.MutualTLS(ca.Issue(t, "member")))
	if err != nil {
		t.Fatalf("handshake after the rotation: %v", err)
	}
	served := conn.ConnectionState().PeerCertificates[0].SerialNumber
	conn.Close()
	if served.Cmp(rotated.Serial) != 0 {
		t.Fatalf("after replacing the files the peer port serves certificate %v, want %v", served, rotated.Serial)
	}
	if _, err := c.Client(f).Put(ctx, "tls", "after rotation"); err != nil {
		t.Fatalf("write forwarded after the rotation: %v", err)
	}
}

// With peer mTLS and plain gossip, a stranger is seen in gossip but never
// added to raft: it cannot complete a handshake with the cluster's CA.
func TestPeerMutualTLSStrangerNotAdded(t *testing.T) {
	ca := testpki.NewCA(t, "members")
	c := Start(t, Options{Configure: func(i int, mc *node.MemberConfig) {
		mc.Node.PeerTLS = ca.MutualTLS(ca.Issue(t, "member"))
		mc.Node.ClusterKey = nil
	}})
	ports := freePorts(t, 3)
	cfg := c.Members[0].cfg
	nc := cfg.Node
	nc.Name = "stranger"
	nc.DataDir = t.TempDir()
	nc.PeerAddr = "127.0.0.1:" + strconv.Itoa(ports[1])
	nc.ClientURLs, nc.PeerURLs = nil, []string{"http://" + nc.PeerAddr}
	nc.BootstrapExpect = 0
	stranger := testpki.NewCA(t, "stranger")
	nc.PeerTLS = stranger.MutualTLS(stranger.Issue(t, "member"))
	nc.PeerDialer = nil
	nc.Gossip = &cluster.Config{BindAddr: "127.0.0.1:" + strconv.Itoa(ports[2]), Join: c.gossipAddrs(), Local: true}
	nc.Registry = nil
	rc := rpc.DefaultConfig()
	// It returns only once the stranger has seen the formed cluster in
	// gossip (and so the cluster has seen it).
	s, err := node.StartMember(node.MemberConfig{Node: nc, RPC: rc, ListenClientURLs: []string{"http://127.0.0.1:" + strconv.Itoa(ports[0])}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	leader := c.Running(c.Leader(10 * time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ms, err := leader.Node.Members(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 3 {
			t.Fatalf("the stranger was added: %v", ms)
		}
	}
}
