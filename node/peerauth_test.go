package node

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"

	"github.com/etcdsql/etcdsql/cluster"
)

// handshake runs a TLS handshake between a client and a server config over
// an in-memory connection and returns the client's and the server's error.
func handshake(t *testing.T, client, server *tls.Config) (error, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srvErr := make(chan error, 1)
	go func() {
		s := tls.Server(b, server)
		err := s.Handshake()
		if err == nil {
			// TLS 1.3: the client learns of a refused certificate on
			// its first read; say something so that read returns.
			_, err = s.Write([]byte{1})
		}
		if err != nil {
			b.Close()
		}
		srvErr <- err
	}()
	c := tls.Client(a, client)
	err := c.Handshake()
	if err == nil {
		_, err = c.Read(make([]byte, 1))
	}
	if err != nil {
		a.Close()
	}
	return err, <-srvErr
}

func TestClusterKeyTLS(t *testing.T) {
	key := []byte("the cluster's shared secret")
	m1, err := ClusterKeyTLS(key)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ClusterKeyTLS(key)
	if err != nil {
		t.Fatal(err)
	}
	if cErr, sErr := handshake(t, m1, m2); cErr != nil || sErr != nil {
		t.Fatalf("two members: client %v, server %v", cErr, sErr)
	}
	other, err := ClusterKeyTLS([]byte("somebody else's shared secret"))
	if err != nil {
		t.Fatal(err)
	}
	if cErr, sErr := handshake(t, other, m1); cErr == nil || sErr == nil {
		t.Fatalf("a client with another key was let in: client %v, server %v", cErr, sErr)
	}
	if cErr, _ := handshake(t, m1, other); cErr == nil {
		t.Fatal("a member accepted a server with another key")
	}
	noCert := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if _, sErr := handshake(t, noCert, m1); sErr == nil {
		t.Fatal("a client without a certificate was let in")
	}
	if _, err := ClusterKeyTLS([]byte("short")); !errors.Is(err, errShortClusterKey) {
		t.Fatalf("a short key: %v", err)
	}
	g1, _ := GossipKey(key)
	g2, _ := GossipKey([]byte("somebody else's shared secret"))
	if len(g1) != 32 || string(g1) == string(g2) || string(g1) == string(key[:min(len(key), 32)]) {
		t.Fatalf("gossip keys: %x %x", g1, g2)
	}
}

func TestConfigRequiresMemberAuth(t *testing.T) {
	gossip := &cluster.Config{Name: "n1", BindAddr: "127.0.0.1:7946"}
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		want error
	}{
		{"lone member", func(c *Config) {}, nil},
		{"gossip, no auth", func(c *Config) { c.Gossip = gossip }, errNoMemberAuth},
		{"gossip, key", func(c *Config) { c.Gossip = gossip; c.ClusterKey = []byte("0123456789abcdef") }, nil},
		{"gossip, short key", func(c *Config) { c.Gossip = gossip; c.ClusterKey = []byte("0123456789") }, errShortClusterKey},
		{"gossip, certificates", func(c *Config) { c.Gossip = gossip; c.PeerTLS = &tls.Config{} }, nil},
		{"gossip, trusted network", func(c *Config) { c.Gossip = gossip; c.TrustedPeerNetwork = true }, nil},
	} {
		c := DefaultConfig()
		tc.set(&c)
		err := c.Validate()
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestVoterLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want int
	}{
		{"started alone", Config{}, 1},
		{"started alone with gossip", Config{Gossip: &cluster.Config{}}, 1},
		{"formed by three", Config{BootstrapExpect: 3, Gossip: &cluster.Config{Join: []string{"a"}}}, 3},
		{"formed by five", Config{BootstrapExpect: 5}, 5},
		{"joined an existing cluster", Config{Gossip: &cluster.Config{Join: []string{"a"}}}, 3},
		{"explicit", Config{MaxVoters: 7, BootstrapExpect: 3}, 7},
	} {
		if got := tc.c.voterLimit(); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}
