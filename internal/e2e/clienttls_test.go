package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testpki"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
)

// A member listening on http and https at once, with client certificates
// required on https: gRPC and the JSON gateway (HTTP/1.1 and HTTP/2) are
// served over TLS, a client without a certificate of the trusted CA is
// refused, and replacing the certificate files changes what new
// handshakes see while open connections go on.
func TestClientTLS(t *testing.T) {
	ca := testpki.NewCA(t, "clients")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	first := ca.Issue(t, "member")
	installLeaf(t, first, certFile, keyFile)
	tlsCfg, err := rpc.ClientTLS{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: ca.CertFile, ClientCertAuth: true}.Config()
	if err != nil {
		t.Fatal(err)
	}
	nc := node.DefaultConfig()
	nc.Name, nc.DataDir, nc.PeerAddr = "m1", t.TempDir(), "127.0.0.1:0"
	nc.HeartbeatTimeout, nc.ElectionTimeout = 200*time.Millisecond, 200*time.Millisecond
	m, err := node.StartMember(node.MemberConfig{Node: nc, RPC: rpc.DefaultConfig(),
		ListenClientURLs: []string{"http://127.0.0.1:0", "https://127.0.0.1:0"}, ClientTLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	plain, secure := m.ClientAddrs[0], m.ClientAddrs[1]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	client := ca.Issue(t, "apisix")
	clientTLS := &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + secure}, TLS: clientTLS, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wch := c.Watch(ctx, "/apisix/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if created := <-wch; !created.Created {
		t.Fatalf("watch over TLS: %+v", created)
	}
	if _, err := c.Put(ctx, "/apisix/routes/1", "tls"); err != nil {
		t.Fatalf("put over TLS: %v", err)
	}
	if ev := <-wch; len(ev.Events) != 1 || string(ev.Events[0].Kv.Value) != "tls" {
		t.Fatalf("watch over TLS delivered %+v", ev)
	}
	pc, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + plain}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if g, err := pc.Get(ctx, "/apisix/routes/1"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "tls" {
		t.Fatalf("get over plain http: %v %v", g, err)
	}

	for _, h2 := range []bool{false, true} {
		body := gatewayRange(t, clientTLS, h2, "https://"+secure)
		if !strings.Contains(body, `"kvs"`) || !strings.Contains(body, "dGxz") { // "tls"
			t.Fatalf("gateway over TLS (HTTP/2 %v) answered %s", h2, body)
		}
	}

	foreign := testpki.NewCA(t, "foreign")
	for name, cfg := range map[string]*tls.Config{
		"no client certificate": {RootCAs: ca.Pool},
		"foreign certificate":   {RootCAs: ca.Pool, Certificates: []tls.Certificate{foreign.Issue(t, "apisix").TLS}},
	} {
		if err := handshake(secure, cfg); err == nil {
			t.Errorf("%s: handshake accepted", name)
		}
	}

	// A client that names the server (SNI, as APISIX's etcd.tls.sni does)
	// checks the certificate against that name.
	named := clientTLS.Clone()
	named.ServerName = "localhost"
	if err := handshake(secure, named); err != nil {
		t.Fatalf("handshake naming localhost: %v", err)
	}
	named.ServerName = "etcd.example"
	if err := handshake(secure, named); err == nil {
		t.Fatal("a client naming a host the certificate is not for accepted it")
	}

	if got := servedSerial(t, secure, clientTLS); got != first.Serial.String() {
		t.Fatalf("served certificate %s, want %s", got, first.Serial)
	}
	second := ca.Issue(t, "member")
	installLeaf(t, second, certFile, keyFile)
	if got := servedSerial(t, secure, clientTLS); got != second.Serial.String() {
		t.Fatalf("after replacing the files the served certificate is %s, want %s", got, second.Serial)
	}
	if _, err := c.Put(ctx, "/apisix/routes/1", "still"); err != nil {
		t.Fatalf("put on the connection opened before the rotation: %v", err)
	}
}

// installLeaf copies a certificate and its key to the files a member reads.
func installLeaf(t *testing.T, leaf *testpki.Leaf, certFile, keyFile string) {
	t.Helper()
	for src, dst := range map[string]string{leaf.KeyFile: keyFile, leaf.CertFile: certFile} {
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

// gatewayRange asks the JSON gateway for /apisix/ over HTTP/1.1 or HTTP/2.
func gatewayRange(t *testing.T, cfg *tls.Config, h2 bool, base string) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(base+"/v3/kv/range", "application/json",
		strings.NewReader(`{"key":"L2FwaXNpeC8=","range_end":"L2FwaXNpeDA="}`))
	if err != nil {
		t.Fatalf("gateway over TLS (HTTP/2 %v): %v", h2, err)
	}
	defer resp.Body.Close()
	if want := 1 + map[bool]int{true: 1}[h2]; resp.ProtoMajor != want {
		t.Fatalf("gateway answered over HTTP/%d, want HTTP/%d", resp.ProtoMajor, want)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// handshake completes a TLS handshake and a first read (TLS 1.3 reports a
// refused client certificate only then).
func handshake(addr string, cfg *tls.Config) error {
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		return err
	}
	_, err = conn.Read(make([]byte, 1))
	return err
}

// servedSerial returns the serial number of the certificate a new
// handshake sees.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}
