// Package haproxytest runs a real HAProxy (the Debian package) in front of
// etcdsql members for tests, with the deployment guide's configuration
// (deploy/haproxy/haproxy.cfg): round-robin over the members' client
// ports, health checks on /health, retries on another member.
package haproxytest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/freeport"
)

// DeployConfig is the path of the HAProxy configuration the deployment
// guide ships (deploy/haproxy/haproxy.cfg).
func DeployConfig() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "haproxy", "haproxy.cfg")
}

// Config is the deployment's HAProxy configuration (DeployConfig) with
// its frontend bound to listen and its backend's servers replaced by the
// given members, each with the options of the deployment's first server
// line, and its maxconn lowered to what this process's file descriptor
// limit allows: every other setting (mode, timeouts, retries, health
// checks) is the deployment's own, so tests exercise what operators run.
func Config(listen string, backends []string) (string, error) {
	b, err := os.ReadFile(DeployConfig())
	if err != nil {
		return "", fmt.Errorf("haproxytest: %w", err)
	}
	var out strings.Builder
	binds, servers := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 2 && fields[0] == "bind":
			binds++
			fmt.Fprintf(&out, "    bind %s\n", listen)
			continue
		case len(fields) == 2 && fields[0] == "maxconn":
			if n, err := strconv.Atoi(fields[1]); err == nil && n > fdMaxconn() {
				// HAProxy needs two descriptors a connection and refuses
				// to start when the process may not open them all.
				fmt.Fprintf(&out, "    maxconn %d\n", fdMaxconn())
				continue
			}
		case len(fields) >= 3 && fields[0] == "server":
			servers++
			if servers > 1 {
				continue
			}
			opts := strings.Join(fields[3:], " ")
			for i, be := range backends {
				fmt.Fprintf(&out, "    server m%d %s %s\n", i+1, strings.TrimPrefix(be, "http://"), opts)
			}
			continue
		}
		out.WriteString(line + "\n")
	}
	if binds != 1 || servers == 0 {
		return "", fmt.Errorf("haproxytest: %s: want one bind line and server lines, found %d and %d", DeployConfig(), binds, servers)
	}
	return out.String(), nil
}

// fdMaxconn is the most connections HAProxy can take under this process's
// file descriptor limit (two descriptors each, and some to spare).
func fdMaxconn() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max > 1<<30 {
		return 1 << 20
	}
	return int(rl.Max/2) - 100
}

// Start runs HAProxy in front of the given client URLs and returns its URL.
// It is stopped when the test ends.
func Start(t testing.TB, backends []string) string {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (apt-get install haproxy): %v", err)
	}
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	text, err := Config(addr, backends)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		logf.Close()
	})
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "haproxy.log"))
			t.Fatalf("haproxy at %s not serving: %v\n%s", url, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
