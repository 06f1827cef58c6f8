package difftest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/freeport"
	"github.com/etcdsql/etcdsql/internal/serverproc"
)

// EtcdBinary is the etcd 3.4 executable started by StartEtcd. The
// environment variable DIFFTEST_ETCD overrides it.
var EtcdBinary = "/usr/bin/etcd"

// PasswordCost is the bcrypt cost both sides hash passwords with (etcd's
// --bcrypt-cost), bcrypt's least: under the race detector one hash at the
// default cost (10) takes over a second, and the auth cases hash a dozen
// times within one case's timeout. No reply shows the cost.
const PasswordCost = 4

const (
	// etcdStartTimeout bounds one start attempt, up to a healthy /health.
	etcdStartTimeout = 20 * time.Second
	// etcdStartAttempts retries a start whose process died early, which is
	// what happens when another process took one of the free ports first.
	etcdStartAttempts = 3
)

// StartEtcd starts a single-member etcd 3.4 on free loopback ports, with
// its data directory in t.TempDir(), waits until /health answers
// {"health":"true"}, and stops it in t.Cleanup. It returns the client URL
// ("http://127.0.0.1:PORT"), which serves gRPC and the HTTP/JSON gateway.
//
// When the binary is missing the test is skipped, unless CI=true, in which
// case it fails.
func StartEtcd(t testing.TB) string {
	t.Helper()
	return StartEtcdWith(t, EtcdOptions{})
}

// TLSFiles are a server's client-port TLS files, named after etcd's flags.
type TLSFiles struct {
	CertFile, KeyFile string // --cert-file, --key-file
	TrustedCAFile     string // --trusted-ca-file
	ClientCertAuth    bool   // --client-cert-auth
}

// EtcdOptions change how StartEtcdWith starts etcd.
type EtcdOptions struct {
	// TLS, when set, makes the client URL https with these files.
	TLS *TLSFiles
	// ProbeTLS is the client configuration of the /health probe on an
	// https client URL (a client certificate when ClientCertAuth is set).
	ProbeTLS *tls.Config
	// DataDir, when set, is an existing data directory to start on (one
	// RestoreSnapshot made); by default etcd starts a new cluster in a
	// directory of its own.
	DataDir string
}

// args returns the extra etcd flags of the client port.
func (o EtcdOptions) args() []string {
	if o.TLS == nil {
		return nil
	}
	a := []string{"--cert-file", o.TLS.CertFile, "--key-file", o.TLS.KeyFile}
	if o.TLS.TrustedCAFile != "" {
		a = append(a, "--trusted-ca-file", o.TLS.TrustedCAFile)
	}
	if o.TLS.ClientCertAuth {
		a = append(a, "--client-cert-auth")
	}
	return a
}

// StartEtcdWith is StartEtcd with options; with o.TLS it returns an
// "https://127.0.0.1:PORT" client URL.
func StartEtcdWith(t testing.TB, o EtcdOptions) string {
	t.Helper()
	bin := EtcdBinary
	if env := os.Getenv("DIFFTEST_ETCD"); env != "" {
		bin = env
	}
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("difftest: etcd binary %s not usable: %v", bin, err)
		}
		t.Skipf("difftest: etcd binary %s not usable (%v); set CI=true to make this fatal", bin, err)
	}
	var lastErr error
	for attempt := 1; attempt <= etcdStartAttempts; attempt++ {
		url, err := startEtcdOnce(t, bin, attempt, o)
		if err == nil {
			return url
		}
		lastErr = err
		if !errors.Is(err, serverproc.ErrExited) {
			break
		}
	}
	t.Fatalf("difftest: start etcd: %v", lastErr)
	return ""
}

// startEtcdOnce makes one start attempt. On success the process is owned by
// a t.Cleanup; on failure it has already been stopped.
func startEtcdOnce(t testing.TB, bin string, attempt int, o EtcdOptions) (string, error) {
	clientPort, err := freePort()
	if err != nil {
		return "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	scheme := "http"
	if o.TLS != nil {
		scheme = "https"
	}
	dataDir := filepath.Join(dir, "data")
	if o.DataDir != "" {
		dataDir = o.DataDir
	}
	clientURL := fmt.Sprintf("%s://127.0.0.1:%d", scheme, clientPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	logPath := filepath.Join(dir, fmt.Sprintf("etcd-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", fmt.Errorf("create etcd log: %w", err)
	}
	defer logFile.Close()

	cmd := exec.Command(bin, append([]string{
		"--name", "difftest",
		"--data-dir", dataDir,
		"--listen-client-urls", clientURL,
		"--advertise-client-urls", clientURL,
		"--listen-peer-urls", peerURL,
		"--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "difftest=" + peerURL,
		"--initial-cluster-state", "new",
		"--enable-grpc-gateway",
		"--logger", "zap",
		"--log-level", "warn",
		"--bcrypt-cost", strconv.Itoa(PasswordCost),
	}, o.args()...)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("exec %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	ctx, cancel := context.WithTimeout(context.Background(), etcdStartTimeout)
	defer cancel()
	if err := serverproc.WaitHealthy(ctx, clientURL, o.ProbeTLS, exited); err != nil {
		stop()
		return "", fmt.Errorf("%w; log %s:\n%s", err, logPath, serverproc.Tail(logPath, 2048))
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("difftest: etcd at %s log tail:\n%s", clientURL, serverproc.Tail(logPath, 2048))
		}
	})
	return clientURL, nil
}

// freePort picks a free port on 127.0.0.1 (see freeport.Ports). The port
// is released before use, so a start attempt can still lose a race for it.
func freePort() (int, error) {
	ports, err := freeport.Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}
