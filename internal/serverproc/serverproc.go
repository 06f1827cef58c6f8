// Package serverproc starts etcd 3.4 and etcdsql server processes (one
// member or a cluster) on loopback and waits until they are healthy, for
// benchmarks that compare them (internal/benchcompare) and for tests that
// start a real etcd (internal/difftest).
package serverproc

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/etcdsql/etcdsql/internal/freeport"
)

// Server is a single member or a cluster of server processes on loopback.
type Server struct {
	Endpoints []string // client URLs, one per member
	procs     []*exec.Cmd
	exited    []chan error
	logs      []string
}

// StartEtcd starts members etcd processes (bin, an etcd 3.4) forming one
// cluster, with default settings, data and logs under dir, and waits until
// each answers /health.
func StartEtcd(bin, dir string, members int) (*Server, error) {
	ports, err := freeport.Ports(2 * members)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range members {
		initial = append(initial, fmt.Sprintf("e%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	return start(dir, members, func(i int) (string, []string) {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		return client, []string{bin,
			"--name", fmt.Sprintf("e%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("e%d", i)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--enable-grpc-gateway", "--logger", "zap", "--log-level", "warn",
		}
	})
}

// StartEtcdsql starts members etcdsql processes (bin) forming one cluster
// (three or more through gossip and --bootstrap-expect, with a cluster key
// written under dir), with the extra flags, data and logs under dir, and
// waits until each answers /health.
func StartEtcdsql(bin, dir string, members int, extra ...string) (*Server, error) {
	ports, err := freeport.Ports(3 * members)
	if err != nil {
		return nil, err
	}
	var cluster []string
	if members > 1 {
		key := make([]byte, 24)
		rand.Read(key)
		keyFile := filepath.Join(dir, "cluster.key")
		if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
			return nil, err
		}
		var gossip []string
		for i := range members {
			gossip = append(gossip, "127.0.0.1:"+strconv.Itoa(ports[3*i+2]))
		}
		cluster = []string{"--join", strings.Join(gossip, ","), "--bootstrap-expect", strconv.Itoa(members), "--cluster-key-file", keyFile}
	}
	return start(dir, members, func(i int) (string, []string) {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[3*i])
		args := []string{bin,
			"--name", fmt.Sprintf("m%d", i),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("m%d", i)),
			"--listen-client-urls", client,
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", ports[3*i+1]),
			"--log-level", "warn",
		}
		if members > 1 {
			args = append(args, "--gossip-addr", "127.0.0.1:"+strconv.Itoa(ports[3*i+2]))
		}
		return client, append(append(args, cluster...), extra...)
	})
}

// start runs the members' commands (argv(i) gives member i's client URL
// and command line) and waits until every member is healthy.
func start(dir string, members int, argv func(i int) (string, []string)) (*Server, error) {
	s := &Server{}
	for i := range members {
		url, args := argv(i)
		logPath := filepath.Join(dir, fmt.Sprintf("member-%d.log", i))
		logf, err := os.Create(logPath)
		if err != nil {
			s.Stop()
			return nil, err
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		logf.Close()
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("exec %s: %w", args[0], err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		s.Endpoints = append(s.Endpoints, url)
		s.procs, s.exited, s.logs = append(s.procs, cmd), append(s.exited, exited), append(s.logs, logPath)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, url := range s.Endpoints {
		if err := WaitHealthy(ctx, url, nil, s.exited[i]); err != nil {
			s.Stop()
			return nil, fmt.Errorf("%w; log %s:\n%s", err, s.logs[i], Tail(s.logs[i], 2048))
		}
	}
	return s, nil
}

// Pids returns the members' process IDs.
func (s *Server) Pids() []int {
	var pids []int
	for _, p := range s.procs {
		pids = append(pids, p.Process.Pid)
	}
	return pids
}

// Stop kills the members and waits for them to be gone.
func (s *Server) Stop() {
	for i, p := range s.procs {
		p.Process.Signal(syscall.SIGKILL)
		<-s.exited[i]
	}
	s.procs = nil
}

// ErrExited reports that a server process ended before it was healthy.
var ErrExited = errors.New("the process exited before becoming healthy")

// healthPollInterval is the pause between two /health probes.
const healthPollInterval = 25 * time.Millisecond

// WaitHealthy polls GET /health until it reports healthy, the process exits
// (a value on exited: ErrExited), or ctx ends.
func WaitHealthy(ctx context.Context, clientURL string, probeTLS *tls.Config, exited <-chan error) error {
	tr := &http.Transport{TLSClientConfig: probeTLS}
	defer tr.CloseIdleConnections()
	client := &http.Client{Timeout: time.Second, Transport: tr}
	ticker := time.NewTicker(healthPollInterval)
	defer ticker.Stop()
	var lastErr error
	for {
		ok, err := probeHealth(ctx, client, clientURL)
		if ok {
			return nil
		}
		lastErr = err
		select {
		case err := <-exited:
			return fmt.Errorf("%w: %v", ErrExited, err)
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy in time (last probe: %v): %w", clientURL, lastErr, ctx.Err())
		case <-ticker.C:
		}
	}
}

// probeHealth makes one GET /health request.
func probeHealth(ctx context.Context, client *http.Client, clientURL string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientURL+"/health", nil)
	if err != nil {
		return false, fmt.Errorf("build /health request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, fmt.Errorf("GET /health: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return false, fmt.Errorf("read /health: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return false, fmt.Errorf("GET /health: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return true, nil
}

// Tail returns at most the last n bytes of a file, for diagnostics.
func Tail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}

// Usage returns the CPU time (user and system) the processes have used and
// their total resident memory in bytes, from /proc.
func Usage(pids ...int) (cpu time.Duration, rss int64, err error) {
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, 0, err
		}
		// The command name, in parentheses, may hold spaces: count
		// fields after it. utime and stime are fields 14 and 15.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		cpu += time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
		n, err := statusBytes(pid, "VmRSS")
		if err != nil {
			return 0, 0, err
		}
		rss += n
	}
	return cpu, rss, nil
}

// PeakRSS returns the peak resident memory of a process (VmHWM) in bytes.
func PeakRSS(pid int) (int64, error) { return statusBytes(pid, "VmHWM") }

// statusBytes reads one size of /proc/PID/status, in bytes.
func statusBytes(pid int, field string) (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}
