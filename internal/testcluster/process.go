package testcluster

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// Proc is one member run as a real etcdsql process.
type Proc struct {
	Name    string
	URL     string
	DataDir string
	args    []string
	cmd     *exec.Cmd
	log     *os.File
	logFrom int64 // the log's size when the current run started
}

// Procs is a cluster of etcdsql processes formed with --bootstrap-expect.
type Procs struct {
	t     testing.TB
	bin   string
	Procs []*Proc
	// probe is the TLS configuration readiness probes use on https://
	// client URLs (nil: http://).
	probe *tls.Config
}

// StartProcesses runs n members as processes on loopback, each with the
// extra flags, and waits until they serve. They are killed when the test
// ends. Logs go to <data dir>.log.
func StartProcesses(t testing.TB, n int, extra ...string) *Procs {
	t.Helper()
	return startProcesses(t, n, nil, extra)
}

func startProcesses(t testing.TB, n int, ct *ClientTLS, extra []string) *Procs {
	t.Helper()
	ps := &Procs{t: t, bin: testserver.Build(t)}
	scheme := "http://"
	if ct != nil {
		scheme, ps.probe = "https://", ct.Probe
		extra = append(ct.flags(), extra...)
	}
	ports := freePorts(t, 3*n)
	keyFile := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(keyFile, []byte(ClusterKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var join []string
	for i := range n {
		join = append(join, "127.0.0.1:"+strconv.Itoa(ports[3*i+2]))
	}
	for i := range n {
		p := &Proc{
			Name:    "n" + strconv.Itoa(i+1),
			URL:     scheme + "127.0.0.1:" + strconv.Itoa(ports[3*i]),
			DataDir: filepath.Join(t.TempDir(), "data"),
		}
		p.args = append([]string{
			"--name", p.Name, "--data-dir", p.DataDir,
			"--listen-client-urls", p.URL,
			"--listen-peer-urls", "http://127.0.0.1:" + strconv.Itoa(ports[3*i+1]),
			"--gossip-addr", join[i], "--join", joinList(join),
			"--bootstrap-expect", strconv.Itoa(n), "--log-level", "warn", "--cluster-key-file", keyFile,
		}, extra...)
		ps.Procs = append(ps.Procs, p)
	}
	t.Cleanup(func() {
		ps.KillAll()
		if t.Failed() {
			ps.dumpLogs()
		}
	})
	for i := range ps.Procs {
		ps.start(i)
	}
	var wg sync.WaitGroup
	for _, p := range ps.Procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			testserver.WaitReadyTLS(t, p.URL, ps.probe, 30*time.Second)
		}()
	}
	wg.Wait()
	return ps
}

func joinList(l []string) string {
	s := ""
	for i, a := range l {
		if i > 0 {
			s += ","
		}
		s += a
	}
	return s
}

func (ps *Procs) start(i int) {
	p := ps.Procs[i]
	logf, err := os.OpenFile(p.DataDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		ps.t.Fatalf("log file: %v", err)
	}
	p.log = logf
	if st, err := logf.Stat(); err == nil {
		p.logFrom = st.Size()
	}
	p.cmd = exec.Command(ps.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		ps.t.Fatalf("start %s: %v", p.Name, err)
	}
}

// Kill sends SIGKILL to member i and waits for it to be gone.
func (ps *Procs) Kill(i int) {
	p := ps.Procs[i]
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.cmd = nil
	p.log.Close()
}

// Terminate sends SIGTERM to member i (a graceful stop: it drains) and
// returns a function that waits for the process to exit and returns how
// it exited (nil for status 0).
func (ps *Procs) Terminate(i int) (wait func() error) {
	p := ps.Procs[i]
	cmd := p.cmd
	if cmd == nil {
		ps.t.Fatalf("terminate %s: not running", p.Name)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		ps.t.Fatalf("terminate %s: %v", p.Name, err)
	}
	return func() error {
		err := cmd.Wait()
		p.cmd = nil
		p.log.Close()
		return err
	}
}

// WaitStarted waits until member i's current run has logged that its
// start is over ("serving clients"); before that a SIGTERM interrupts the
// start (exit status 1) instead of draining the member. A member that
// does not lead logs it up to ten election timeouts after it serves. The
// line is logged at info: start the members with "--log-level", "info".
func (ps *Procs) WaitStarted(i int, timeout time.Duration) {
	p := ps.Procs[i]
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(p.DataDir + ".log")
		if err == nil && int64(len(b)) > p.logFrom && bytes.Contains(b[p.logFrom:], []byte(`"msg":"serving clients"`)) {
			return
		}
		if time.Now().After(deadline) {
			ps.t.Fatalf("%s has not finished starting after %v", p.Name, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts a killed member i again and waits until it serves.
func (ps *Procs) Restart(i int) {
	ps.start(i)
	testserver.WaitReadyTLS(ps.t, ps.Procs[i].URL, ps.probe, 30*time.Second)
}

// Pid returns member i's process ID (0 when stopped).
func (ps *Procs) Pid(i int) int {
	if ps.Procs[i].cmd == nil {
		return 0
	}
	return ps.Procs[i].cmd.Process.Pid
}

// KillAll kills every member (resumed first, should it be paused).
func (ps *Procs) KillAll() {
	for i := range ps.Procs {
		if p := ps.Procs[i]; p.cmd != nil {
			p.cmd.Process.Signal(syscall.SIGCONT)
		}
		ps.Kill(i)
	}
}

// Endpoints returns the client URLs.
func (ps *Procs) Endpoints() []string {
	var out []string
	for _, p := range ps.Procs {
		out = append(out, p.URL)
	}
	return out
}

// EndpointsExcept returns the client URLs of every member but member i.
func (ps *Procs) EndpointsExcept(i int) []string {
	var out []string
	for j, p := range ps.Procs {
		if j != i {
			out = append(out, p.URL)
		}
	}
	return out
}

func (ps *Procs) String() string { return fmt.Sprint(ps.Endpoints()) }

// Pause stops member i's process (SIGSTOP): it holds its connections and
// state but answers nothing, as a member stuck in a long GC pause or on
// an overloaded host.
func (ps *Procs) Pause(i int) { ps.signal(i, syscall.SIGSTOP) }

// Resume continues a paused member (SIGCONT).
func (ps *Procs) Resume(i int) { ps.signal(i, syscall.SIGCONT) }

func (ps *Procs) signal(i int, sig syscall.Signal) {
	if p := ps.Procs[i]; p.cmd != nil {
		if err := p.cmd.Process.Signal(sig); err != nil {
			ps.t.Fatalf("signal %v to %s: %v", sig, p.Name, err)
		}
	}
}

// dumpLogs prints the end of each member's log into the test's output.
func (ps *Procs) dumpLogs() {
	for _, p := range ps.Procs {
		b, err := os.ReadFile(p.DataDir + ".log")
		if err != nil {
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		ps.t.Logf("log of %s (end):\n%s", p.Name, b)
	}
}
