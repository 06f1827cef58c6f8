package upgradetest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/freeport"
)

// StopTimeout bounds how long a member may take to exit after SIGTERM.
const StopTimeout = 30 * time.Second

// Binary is a built etcdsql and the flags its release needs besides the
// ones every release knows.
type Binary struct {
	// Release is the release it is ("v0.1.0", or this tree's release.Name).
	Release string
	Path    string
	// Extra flags, e.g. --trusted-peer-network for a release that requires
	// peer authentication to be chosen explicitly.
	Extra []string
}

// Member is one member's slot: name, ports and data dir survive each
// replacement of its binary.
type Member struct {
	Name      string
	URL       string // client URL
	PeerURL   string
	Gossip    string
	DataDir   string
	Running   Binary // the binary that runs (or ran last)
	cmd       *exec.Cmd
	exited    chan struct{}
	exitErr   error
	logf      *os.File
	logFrom   int64 // where this run's lines start in the log
	baseFlags []string
}

// Cluster is members run as processes of chosen binaries, formed with
// --bootstrap-expect the way v0.1.0's own process harness forms one, on one
// MySQL database.
type Cluster struct {
	t       testing.TB
	mu      sync.Mutex
	Members []*Member
	clients []*clientv3.Client // one per member, for its status
}

// StartCluster starts n members of bin on loopback ports, sharing the
// database dsn, and waits until each serves. They are killed when the test
// ends; their logs are printed if it failed.
func StartCluster(t testing.TB, n int, bin Binary, dsn string) *Cluster {
	t.Helper()
	ports, err := freeport.Ports(3 * n)
	if err != nil {
		t.Fatal(err)
	}
	var gossip []string
	for i := range n {
		gossip = append(gossip, "127.0.0.1:"+strconv.Itoa(ports[3*i+2]))
	}
	c := &Cluster{t: t}
	base := t.TempDir()
	for i := range n {
		m := &Member{
			Name:    "n" + strconv.Itoa(i+1),
			URL:     "http://127.0.0.1:" + strconv.Itoa(ports[3*i]),
			PeerURL: "http://127.0.0.1:" + strconv.Itoa(ports[3*i+1]),
			Gossip:  gossip[i],
			DataDir: filepath.Join(base, "n"+strconv.Itoa(i+1)),
		}
		m.baseFlags = []string{
			"--name", m.Name, "--data-dir", m.DataDir,
			"--listen-client-urls", m.URL, "--listen-peer-urls", m.PeerURL,
			"--gossip-addr", m.Gossip, "--join", strings.Join(gossip, ","),
			"--bootstrap-expect", strconv.Itoa(n), "--mysql-dsn", dsn, "--log-level", "info",
			// Snapshots every few hundred entries: each release restarts
			// from snapshots the other one wrote.
			"--snapshot-count", "300",
		}
		c.Members = append(c.Members, m)
		cli, err := newClient(m.URL)
		if err != nil {
			t.Fatal(err)
		}
		c.clients = append(c.clients, cli)
	}
	t.Cleanup(func() {
		for _, cli := range c.clients {
			cli.Close()
		}
		c.killAll()
		if t.Failed() {
			c.dumpLogs()
		}
	})
	for i := range c.Members {
		if err := c.Start(i, bin); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range c.Members {
		if err := c.WaitStarted(i, time.Minute); err != nil {
			t.Fatalf("%s (%s): %v", m.Name, bin.Release, err)
		}
	}
	return c
}

// Start runs stopped member i as bin, on its data dir and ports. It
// returns once the process runs, not when it serves.
func (c *Cluster) Start(i int, bin Binary) error {
	m := c.Members[i]
	logf, err := os.OpenFile(m.DataDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	from, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		logf.Close()
		return err
	}
	fmt.Fprintf(logf, "=== %s starts %s as %s\n", time.Now().UTC().Format(time.RFC3339Nano), m.Name, bin.Release)
	cmd := exec.Command(bin.Path, append(append([]string(nil), m.baseFlags...), bin.Extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s as %s: %w", m.Name, bin.Release, err)
	}
	exited := make(chan struct{})
	c.mu.Lock()
	m.cmd, m.logf, m.exited, m.exitErr, m.Running, m.logFrom = cmd, logf, exited, nil, bin, from
	c.mu.Unlock()
	go func() {
		err := cmd.Wait()
		c.mu.Lock()
		m.exitErr = err
		c.mu.Unlock()
		logf.Close()
		close(exited)
	}()
	return nil
}

// Stop sends SIGTERM to member i and waits until it exits. It returns an
// error if the member exited with a non-zero status or outlived
// StopTimeout (it is killed then).
func (c *Cluster) Stop(i int) error {
	m := c.Members[i]
	if m.cmd == nil {
		return nil
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM to %s: %w", m.Name, err)
	}
	defer func() { m.cmd = nil }()
	select {
	case <-m.exited:
	case <-time.After(StopTimeout):
		m.cmd.Process.Kill()
		<-m.exited
		return fmt.Errorf("%s (%s) still running %v after SIGTERM; killed", m.Name, m.Running.Release, StopTimeout)
	}
	c.mu.Lock()
	err := m.exitErr
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s (%s) exited after SIGTERM: %w", m.Name, m.Running.Release, err)
	}
	return nil
}

// startedLine is what every release logs once its start is over: before
// it, a SIGTERM interrupts the start (exit status 1) instead of stopping
// the member gracefully.
const startedLine = `"msg":"serving clients"`

// WaitStarted waits until member i's current run has logged that it
// started. A member that formed or rejoined a cluster logs it when it leads
// or after waiting ten election timeouts to learn that it does not.
func (c *Cluster) WaitStarted(i int, timeout time.Duration) error {
	m := c.Members[i]
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(m.DataDir + ".log")
		if err != nil {
			return err
		}
		if int64(len(b)) > m.logFrom && strings.Contains(string(b[m.logFrom:]), startedLine) {
			return nil
		}
		if !c.Alive(i) {
			return fmt.Errorf("%s (%s) exited while starting", m.Name, m.Running.Release)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) has not finished starting after %v", m.Name, m.Running.Release, timeout)
		}
		time.Sleep(pollEvery)
	}
}

// Alive reports whether member i's process runs.
func (c *Cluster) Alive(i int) bool {
	m := c.Members[i]
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Endpoints returns the client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.URL)
	}
	return out
}

func (c *Cluster) killAll() {
	for _, m := range c.Members {
		if m.cmd != nil {
			m.cmd.Process.Kill()
			<-m.exited
			m.cmd = nil
		}
	}
}

// dumpLogs prints the end of each member's log.
func (c *Cluster) dumpLogs() {
	for _, m := range c.Members {
		b, err := os.ReadFile(m.DataDir + ".log")
		if err != nil {
			continue
		}
		if len(b) > 8000 {
			b = b[len(b)-8000:]
		}
		c.t.Logf("log of %s (end):\n%s", m.Name, b)
	}
}

// LogTail returns the last n bytes of member i's log.
func (c *Cluster) LogTail(i, n int) string {
	b, err := os.ReadFile(c.Members[i].DataDir + ".log")
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
