package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// ClientTLS are the client port's TLS files, as etcd's flags name them.
type ClientTLS struct {
	CertFile string // --cert-file
	KeyFile  string // --key-file
	// TrustedCAFile (--trusted-ca-file) is the CA that signs client
	// certificates; with ClientCertAuth a client must present one.
	TrustedCAFile  string
	ClientCertAuth bool // --client-cert-auth
}

// Config returns the server's TLS configuration. The files are read now,
// and again at a handshake after any of them changed (size or
// modification time), so certificates are rotated by replacing the files:
// new handshakes use the new ones, connections already open keep theirs.
// A file that fails to load later is logged by the caller's handshake
// error and the last good certificate stays in use.
func (c ClientTLS) Config() (*tls.Config, error) {
	if c.CertFile == "" || c.KeyFile == "" {
		return nil, errors.New("client TLS needs a certificate and a key (--cert-file, --key-file)")
	}
	if c.ClientCertAuth && c.TrustedCAFile == "" {
		return nil, errors.New("--client-cert-auth needs --trusted-ca-file")
	}
	r := &tlsFiles{c: c}
	if err := r.load(); err != nil {
		return nil, err
	}
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// gRPC needs h2; etcd's JSON gateway is served over either.
		NextProtos: []string{"h2", "http/1.1"},
	}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool := r.current()
		cfg := base.Clone()
		cfg.GetConfigForClient = nil
		cfg.Certificates = []tls.Certificate{*cert}
		if pool != nil {
			cfg.ClientCAs = pool
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
			if c.ClientCertAuth {
				cfg.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
		return cfg, nil
	}
	return base, nil
}

// tlsFiles holds the certificate and CA pool read from the files, and
// re-reads them when the files change.
type tlsFiles struct {
	c ClientTLS

	mu    sync.Mutex
	stamp string // sizes and modification times of the files last read
	cert  *tls.Certificate
	pool  *x509.CertPool
}

// current returns the certificate and pool, reloading them first if the
// files changed since they were read (a stat of each per handshake).
func (r *tlsFiles) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stampOf() != r.stamp {
		_ = r.loadLocked() // on error keep the last good files
	}
	return r.cert, r.pool
}

func (r *tlsFiles) load() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.loadLocked()
}

func (r *tlsFiles) loadLocked() error {
	stamp := r.stampOf()
	cert, err := tls.LoadX509KeyPair(r.c.CertFile, r.c.KeyFile)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	var pool *x509.CertPool
	if r.c.TrustedCAFile != "" {
		pem, err := os.ReadFile(r.c.TrustedCAFile)
		if err != nil {
			return fmt.Errorf("--trusted-ca-file: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--trusted-ca-file %s: no certificate in it", r.c.TrustedCAFile)
		}
	}
	r.cert, r.pool, r.stamp = &cert, pool, stamp
	return nil
}

// stampOf describes the files' sizes and modification times.
func (r *tlsFiles) stampOf() string {
	var s string
	for _, p := range []string{r.c.CertFile, r.c.KeyFile, r.c.TrustedCAFile} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}

// MutualConfig returns a configuration for both ends of a member-to-member
// connection (the peer port: --peer-cert-file, --peer-key-file,
// --peer-trusted-ca-file): as a server it requires a client certificate
// of the CA, as a client it presents its certificate and checks the
// server's against the CA and the name dialled. The files are re-read as
// Config re-reads them, on either end's next handshake.
func (c ClientTLS) MutualConfig() (*tls.Config, error) {
	c.ClientCertAuth = true
	if c.TrustedCAFile == "" {
		return nil, errors.New("peer TLS needs a CA (--peer-trusted-ca-file)")
	}
	server, err := c.Config()
	if err != nil {
		return nil, err
	}
	r := server.GetConfigForClient
	cfg := server.Clone()
	cfg.NextProtos = nil
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		sc, err := r(hello)
		if err == nil {
			sc.NextProtos = nil
		}
		return sc, err
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		leaf, err := r(nil)
		if err != nil {
			return nil, err
		}
		return &leaf.Certificates[0], nil
	}
	// The server's certificate is checked below, against the CA as the
	// files hold it now, rather than against a pool fixed at start.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		sc, err := r(nil)
		if err != nil {
			return err
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("peer TLS: the member presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: sc.ClientCAs, Intermediates: inter, DNSName: cs.ServerName,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		return err
	}
	return cfg, nil
}
