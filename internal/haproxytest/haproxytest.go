// Package haproxytest runs a real HAProxy (the Debian package) in front of
// etcdsql members for tests: round-robin over the members' client ports,
// with health checks on /health as the deployment guide configures it.
package haproxytest

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/freeport"
)

// Config is HAProxy's configuration for a member list, in HTTP mode: every
// request (each APISIX call, each watch) is balanced on its own, members
// that fail /health are drained, and watch streams may stay quiet for
// longer than APISIX's 50 s watch timeout.
func Config(listen string, backends []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 90s
    timeout server 90s
    timeout http-keep-alive 60s
    option redispatch
    retries 2
    # Watch events are small writes on a long response: forward each at
    # once (without it the kernel may hold one up to 200 ms, MSG_MORE).
    option http-no-delay

frontend etcd
    bind %s
    default_backend etcdsql

backend etcdsql
    balance roundrobin
    option httpchk GET /health
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
`, listen)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server m%d %s check\n", i+1, strings.TrimPrefix(be, "http://"))
	}
	return b.String()
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
	if err := os.WriteFile(cfg, []byte(Config(addr, backends)), 0o600); err != nil {
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
