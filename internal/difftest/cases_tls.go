package difftest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// probeTimeout bounds one call of a refused client; a refused handshake
// fails fast, so it is only spent when a server accepts what it should not.
const probeTimeout = 2 * time.Second

// TLSPKI is what a TLS run needs on the client side. Both servers present
// a certificate of the CA in Pool and require client certificates of that
// CA (--client-cert-auth).
type TLSPKI struct {
	// Pool trusts the servers' certificates.
	Pool *x509.CertPool
	// Client (CN "apisix") is the certificate the Runner's endpoints
	// present; RootCN has CN "root"; NoCN has an empty subject; Foreign
	// (CN "apisix") comes from a CA neither server trusts. "apisix" and
	// "root" are users once the auth case made them.
	Client, RootCN, NoCN, Foreign tls.Certificate
}

// config returns a client configuration presenting certs (none for no
// client certificate).
func (p TLSPKI) config(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.Pool, Certificates: certs, MinVersion: tls.VersionTLS12}
}

// ClientConfig is the configuration of the Runner's endpoints.
func (p TLSPKI) ClientConfig() *tls.Config { return p.config(p.Client) }

// TLSCases run on targets whose client URL is https with client
// certificates required (TestDifferentialTLS). The auth case enables
// authentication and disables it again before it ends.
func TLSCases(p TLSPKI) []Case {
	return []Case{
		{Name: "tls_grpc_kv", Run: tlsGRPC},
		{Name: "tls_gateway_apisix_http", Run: tlsGateway},
		{Name: "tls_version_health_http", Run: tlsVersionHealth},
		{Name: "tls_refused_clients", Run: func(c *Conn) { tlsRefusals(c, p) }},
		{Name: "tls_auth_and_cert_cn", Run: func(c *Conn) { tlsAuthCN(c, p) }},
	}
}

// tlsGRPC: put, get, txn and watch through clientv3 over TLS.
func tlsGRPC(c *Conn) {
	s := c.WatchClient(c.Key(""), clientv3.WithPrefix())
	c.Want(s.Collect("created", Msgs(1), streamWait), "messages[0].created", true)
	p := c.Put("put", c.Key("a"), "1", clientv3.WithPrevKV())
	c.WantOK(p)
	c.Want(c.Get("get", c.Key("a")), "body.kvs[0].value", B64("1"))
	t := c.Txn("txn", []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(c.Key("a")), "=", rev(p))},
		[]clientv3.Op{clientv3.OpPut(c.Key("b"), "2")}, nil)
	c.Want(t, "body.succeeded", true)
	o := s.Collect("events", Events(2), streamWait)
	c.Want(o, "messages[0].events[0].kv.key", c.BKey("a"))
	c.Want(o, "messages[1].events[0].kv.value", B64("2"))
}

// tlsGateway replays APISIX's gateway calls over https (HTTP/1.1): readdir,
// put with prev_kv, atomic_set, and a watch stream seeing the writes.
func tlsGateway(c *Conn) {
	s := c.WatchHTTP("watch", httpCreate(c, "", nil))
	c.Want(s.Collect("created", Msgs(1), streamWait), "messages[0].result.created", true)
	put := c.Post("put", "/v3/kv/put", fmt.Sprintf(`{"key":%q,"value":%q,"prev_kv":true}`, c.BKey("routes/1"), B64(`{"uri":"/a"}`)))
	c.WantOK(put)
	prefix := strings.TrimSuffix(c.Prefix(), "/")
	body := fmt.Sprintf(`{"key":%q,"range_end":%q,"limit":0,"revision":0,"sort_order":0,"sort_target":0,`+
		`"serializable":false,"keys_only":false,"count_only":false,"min_mod_revision":0,"max_mod_revision":0,`+
		`"min_create_revision":0,"max_create_revision":0}`, B64(prefix), B64(clientv3.GetPrefixRangeEnd(prefix)))
	r := c.Post("readdir", "/v3/kv/range", body)
	wantKeys(c, r, "body.kvs", "routes/1")
	txn := c.Post("atomic_set", "/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":%q,"target":"MOD","result":"EQUAL","mod_revision":%d}],`+
		`"success":[{"requestPut":{"key":%q,"value":%q}}]}`, c.BKey("routes/1"), rev(put), c.BKey("routes/1"), B64(`{"uri":"/b"}`)))
	c.Want(txn, "body.succeeded", true)
	o := s.Collect("events", Events(2), streamWait)
	c.Want(o, "messages[1].result.events[0].kv.value", B64(`{"uri":"/b"}`))
}

// tlsVersionHealth: what APISIX's CLI and health checks read over https.
func tlsVersionHealth(c *Conn) {
	r, err := c.HTTP.Get(c.Ctx, "/version")
	if err != nil {
		c.Fatalf("GET /version: %v", err)
	}
	body, _ := ParseJSON(r.Body)
	cluster, _ := Lookup(body, "etcdcluster")
	s, _ := cluster.(string)
	c.Want(c.Record("version", M{"status": r.Status, "etcdcluster_at_least_3.4.0": semverAtLeast(s, [3]int{3, 4, 0})}),
		"", M{"status": 200, "etcdcluster_at_least_3.4.0": true})
	// etcdsql adds etcd 3.5's "reason"; APISIX reads "health" only.
	h := c.GetHTTP("health", "/health").Lenient("body.reason")
	c.Want(h, "status", 200)
	c.Want(h, "body.health", "true")
}

// tlsRefusals: what each side answers to a client without a certificate,
// with a certificate of a foreign CA, and to plain http or plain gRPC on
// the https port. The outcome class is compared; the text the client saw
// (a TLS alert, a closed connection, an HTTP 400) is recorded on a lenient
// path, since it depends on the TLS version and the server's Go release.
func tlsRefusals(c *Conn, p TLSPKI) {
	httpsURL := c.Target.URL
	plainURL := "http://" + strings.TrimPrefix(httpsURL, "https://")
	for _, v := range []struct {
		name string
		cfg  *tls.Config
		url  string
	}{
		{"no client certificate", p.config(), httpsURL},
		{"foreign CA certificate", p.config(p.Foreign), httpsURL},
		{"plain http to the https port", nil, plainURL},
	} {
		c.Want(probeHTTP(c, v.name+" (gateway)", v.url, v.cfg), "outcome", "refused")
		c.Want(probeGRPC(c, v.name+" (gRPC)", v.url, v.cfg), "code", "Unavailable")
	}
}

// probeHTTP posts a range on a fresh connection with cfg and records the
// outcome: "refused" when the connection failed or the server answered
// that it expects TLS (etcd 3.4 closes the connection, Go's HTTP server
// answers 400), "answered" with the status otherwise.
func probeHTTP(c *Conn, label, url string, cfg *tls.Config) *Obs {
	h := NewHTTPClientTLS(url, cfg)
	defer h.Close()
	r, err := h.Post(c.Ctx, "/v3/kv/range", []byte(fmt.Sprintf(`{"key":%q}`, c.BKey("a"))))
	switch {
	case err != nil:
		return c.Record(label, M{"outcome": "refused", "detail": err.Error()}).Lenient("detail")
	case r.Status == http.StatusBadRequest && strings.Contains(string(r.Body), "HTTP request to an HTTPS server"):
		return c.Record(label, M{"outcome": "refused", "detail": fmt.Sprintf("HTTP %d: %s", r.Status, r.Body)}).Lenient("detail")
	}
	return c.Record(label, M{"outcome": "answered", "status": r.Status})
}

// probeGRPC ranges over a new gRPC connection with cfg (plain gRPC when
// nil), without clientv3's retries, and records the gRPC code; the error
// text is lenient.
func probeGRPC(c *Conn, label, url string, cfg *tls.Config) *Obs {
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	host := url[strings.Index(url, "://")+3:]
	conn, err := grpc.NewClient("passthrough:///"+host, grpc.WithTransportCredentials(creds))
	if err != nil {
		c.Fatalf("%s: %v", label, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(c.Ctx, probeTimeout)
	defer cancel()
	resp, err := pb.NewKVClient(conn).Range(ctx, &pb.RangeRequest{Key: []byte(c.Key("a"))})
	if err == nil {
		return c.Record(label, M{"code": "OK", "count": resp.Count})
	}
	code, text := grpcError(err)
	return c.Record(label, M{"code": code, "error": text}).Lenient("error")
}
