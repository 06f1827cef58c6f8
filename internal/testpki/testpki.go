// Package testpki issues certificates for tests: a CA, and certificates it
// signs for 127.0.0.1 and localhost, usable as server and client
// certificates, in memory or as PEM files.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	Pool *x509.CertPool
	// CertFile is the CA certificate as a PEM file.
	CertFile string
	serial   atomic.Int64
}

// NewCA makes a CA named name, valid for an hour either side of now.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ca := &CA{Cert: cert, Key: key, Pool: pool}
	ca.serial.Store(1)
	ca.CertFile = writePEM(t, name+"-ca.crt", "CERTIFICATE", der)
	return ca
}

// Leaf is a certificate the CA issued.
type Leaf struct {
	TLS      tls.Certificate
	CertFile string
	KeyFile  string
	Serial   *big.Int
}

// Issue signs a certificate for 127.0.0.1 and localhost with common name
// cn, for server and client use, and writes it and its key as PEM files.
func (ca *CA) Issue(t testing.TB, cn string) *Leaf {
	t.Helper()
	key := newKey(t)
	serial := big.NewInt(ca.serial.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := ca.Cert.Subject.CommonName + "-" + cn + "-" + serial.String()
	return &Leaf{
		TLS:      tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		CertFile: writePEM(t, base+".crt", "CERTIFICATE", der),
		KeyFile:  writePEM(t, base+".key", "EC PRIVATE KEY", keyDER),
		Serial:   serial,
	}
}

// MutualTLS is a configuration that presents leaf and trusts only the CA,
// on both sides of a connection.
func (ca *CA) MutualTLS(leaf *Leaf) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{leaf.TLS},
		RootCAs:      ca.Pool, ClientCAs: ca.Pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}
}

var dirs sync.Map // testing.TB -> its directory

func writePEM(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	dir, loaded := dirs.LoadOrStore(t, t.TempDir())
	if !loaded {
		t.Cleanup(func() { dirs.Delete(t) })
	}
	path := filepath.Join(dir.(string), name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
