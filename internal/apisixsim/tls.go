package apisixsim

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLS is how APISIX reaches https:// etcd hosts (§1.6): etcd.tls.cert and
// etcd.tls.key (the client certificate, for a cluster that requires one),
// apisix.ssl.ssl_trusted_certificate (the CA the hosts' certificates are
// checked against), etcd.tls.verify and etcd.tls.sni. Like
// lua-resty-http and luasec, the client speaks HTTP/1.1 with no ALPN.
type TLS struct {
	// CertFile and KeyFile are etcd.tls.cert and etcd.tls.key (both or
	// neither).
	CertFile, KeyFile string
	// TrustedCAFile is apisix.ssl.ssl_trusted_certificate; empty: the
	// system's roots.
	TrustedCAFile string
	// NoVerify is etcd.tls.verify: false.
	NoVerify bool
	// SNI is etcd.tls.sni; empty: the host of each URL.
	SNI string
}

// config builds the client's TLS configuration.
func (t *TLS) config() (*tls.Config, error) {
	cfg := &tls.Config{ServerName: t.SNI, InsecureSkipVerify: t.NoVerify, MinVersion: tls.VersionTLS12}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, fmt.Errorf("apisixsim: etcd.tls.cert and etcd.tls.key go together")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("apisixsim: etcd.tls.cert: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if t.TrustedCAFile != "" {
		pem, err := os.ReadFile(t.TrustedCAFile)
		if err != nil {
			return nil, fmt.Errorf("apisixsim: ssl_trusted_certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("apisixsim: ssl_trusted_certificate %s: no certificate in it", t.TrustedCAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
