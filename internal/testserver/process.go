package testserver

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/freeport"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Build compiles cmd/etcdsql once per test binary and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "etcdsql-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "etcdsql")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/etcdsql/etcdsql/cmd/etcdsql")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build etcdsql: %v", buildErr)
	}
	return buildPath
}

// FreePort returns a port on 127.0.0.1 that was free a moment ago (see
// freeport.Ports).
func FreePort(t testing.TB) int {
	t.Helper()
	ports, err := freeport.Ports(1)
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return ports[0]
}

// Process is an etcdsql process.
type Process struct {
	URL     string
	DataDir string
	args    []string
	bin     string
	cmd     *exec.Cmd
	log     *os.File
}

// StartProcess runs the etcdsql binary with its own ports and data dir (and
// any extra flags) and waits until it serves. The process is killed when
// the test ends.
func StartProcess(t testing.TB, dataDir string, extraArgs ...string) *Process {
	t.Helper()
	client, peer := FreePort(t), FreePort(t)
	p := &Process{
		URL:     fmt.Sprintf("http://127.0.0.1:%d", client),
		DataDir: dataDir,
		bin:     Build(t),
		args: []string{
			"--name", "p1", "--data-dir", dataDir,
			"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", client),
			"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", peer),
			"--election-timeout", "200", "--log-level", "warn", "--enable-pprof",
		},
	}
	p.args = append(p.args, extraArgs...)
	p.Restart(t)
	t.Cleanup(func() { p.Kill() })
	return p
}

// Restart starts the process again with the same flags (after Kill).
func (p *Process) Restart(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(p.DataDir+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("log file: %v", err)
	}
	p.log = logf
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start etcdsql: %v", err)
	}
	WaitReady(t, p.URL, 15*time.Second)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.cmd = nil
	if p.log != nil {
		p.log.Close()
	}
}

// Pid returns the process ID of the running process.
func (p *Process) Pid() int { return p.cmd.Process.Pid }
