package difftest

import (
	"crypto/tls"
	"testing"

	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/rpc"
)

// The subject of the differential suite is an etcdsql member.
func init() {
	SubjectFactory = func(t testing.TB) string { return testserver.Start(t, testserver.WithBcryptCost(PasswordCost)).URL }
	TLSSubjectFactory = func(t testing.TB, f TLSFiles, probe *tls.Config) string {
		t.Helper()
		cfg, err := rpc.ClientTLS{CertFile: f.CertFile, KeyFile: f.KeyFile, TrustedCAFile: f.TrustedCAFile,
			ClientCertAuth: f.ClientCertAuth}.Config()
		if err != nil {
			t.Fatalf("subject TLS: %v", err)
		}
		return testserver.StartTLS(t, cfg, probe, testserver.WithBcryptCost(PasswordCost)).URL
	}
}
