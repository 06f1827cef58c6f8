package difftest

import (
	"crypto/tls"
	"os"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testpki"
)

// TLSSubjectFactory starts the server under test with its client URL on
// https only, serving the files f, and returns that URL; probe is the
// client configuration its readiness check may use. When nil,
// TestDifferentialTLS starts a second real etcd.
var TLSSubjectFactory func(t testing.TB, f TLSFiles, probe *tls.Config) string

// TestDifferentialTLS runs TLSCases against a reference etcd and a subject
// started with the same certificate files: a server certificate of one
// CA, client certificates of that CA required.
func TestDifferentialTLS(t *testing.T) {
	start := time.Now()
	ca := testpki.NewCA(t, "difftest")
	server := ca.Issue(t, "server")
	pki := TLSPKI{
		Pool:    ca.Pool,
		Client:  ca.Issue(t, "apisix").TLS,
		RootCN:  ca.Issue(t, "root").TLS,
		NoCN:    ca.Issue(t, "").TLS,
		Foreign: testpki.NewCA(t, "foreign").Issue(t, "apisix").TLS,
	}
	files := TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, TrustedCAFile: ca.CertFile, ClientCertAuth: true}
	refURL := StartEtcdWith(t, EtcdOptions{TLS: &files, ProbeTLS: pki.ClientConfig()})
	var subjURL string
	if TLSSubjectFactory != nil {
		subjURL = TLSSubjectFactory(t, files, pki.ClientConfig())
	} else {
		subjURL = StartEtcdWith(t, EtcdOptions{TLS: &files, ProbeTLS: pki.ClientConfig()})
	}
	t.Logf("reference %s, subject %s, started in %v", refURL, subjURL, time.Since(start).Round(time.Millisecond))
	r := NewRunner(t, Target{Name: "reference", URL: refURL, TLS: pki.ClientConfig()},
		Target{Name: "subject", URL: subjURL, TLS: pki.ClientConfig()})
	r.DumpDir = os.Getenv("DIFFTEST_DUMP")
	for _, cs := range TLSCases(pki) {
		t.Run(cs.Name, func(t *testing.T) { r.Run(t, cs) })
	}
	t.Logf("%d cases in %v", len(TLSCases(pki)), time.Since(start).Round(time.Millisecond))
}
