package testcluster

import (
	"crypto/tls"
	"testing"
)

// ClientTLS is the client port's TLS, as etcd's flags give it to a member
// process.
type ClientTLS struct {
	// CertFile and KeyFile are --cert-file and --key-file.
	CertFile, KeyFile string
	// TrustedCAFile is --trusted-ca-file; with ClientCertAuth
	// (--client-cert-auth) clients must present a certificate it signed.
	TrustedCAFile  string
	ClientCertAuth bool
	// Probe is the client TLS configuration the harness's readiness
	// probes use (with a client certificate when ClientCertAuth).
	Probe *tls.Config
}

func (ct *ClientTLS) flags() []string {
	f := []string{"--cert-file", ct.CertFile, "--key-file", ct.KeyFile}
	if ct.TrustedCAFile != "" {
		f = append(f, "--trusted-ca-file", ct.TrustedCAFile)
	}
	if ct.ClientCertAuth {
		f = append(f, "--client-cert-auth")
	}
	return f
}

// StartTLSProcesses is StartProcesses with the members' client URLs on
// https://, served with ct.
func StartTLSProcesses(t testing.TB, n int, ct ClientTLS, extra ...string) *Procs {
	t.Helper()
	return startProcesses(t, n, &ct, extra)
}
