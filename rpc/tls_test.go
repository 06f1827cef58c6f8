package rpc

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testpki"
)

// A member's peer TLS (MutualConfig) accepts a member of its CA at either
// end, and refuses a server or a client of another CA.
func TestMutualConfigChecksBothEnds(t *testing.T) {
	ca, foreign := testpki.NewCA(t, "members"), testpki.NewCA(t, "foreign")
	mine := func(ca *testpki.CA) *tls.Config {
		leaf := ca.Issue(t, "member")
		cfg, err := ClientTLS{CertFile: leaf.CertFile, KeyFile: leaf.KeyFile, TrustedCAFile: ca.CertFile}.MutualConfig()
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, c := range []struct {
		name           string
		server, client *tls.Config
		ok             bool
	}{
		{"same CA", mine(ca), mine(ca), true},
		{"foreign server", foreign.MutualTLS(foreign.Issue(t, "member")), mine(ca), false},
		{"foreign client", mine(ca), mine(foreign), false},
	} {
		if err := mutualHandshake(t, c.server, c.client); (err == nil) != c.ok {
			t.Errorf("%s: handshake error %v, want success %v", c.name, err, c.ok)
		}
	}
}

// mutualHandshake runs one handshake between server and client over
// loopback, with a first read (TLS 1.3 reports a refused client
// certificate only then), and returns the client's error.
func mutualHandshake(t *testing.T, server, client *tls.Config) error {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", server)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		if c.(*tls.Conn).Handshake() == nil {
			c.Write([]byte("x"))
		}
	}()
	raw, err := net.DialTimeout("tcp", l.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg := client.Clone()
	cfg.ServerName = "127.0.0.1"
	conn := tls.Client(raw, cfg)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if err := conn.Handshake(); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}
