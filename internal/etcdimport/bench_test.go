package etcdimport_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/difftest"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// BenchmarkImportVersusMakeMirror copies the same etcd key space
// (ETCDSQL_BENCH_KEYS keys, 100,000 by default, of 1 KiB values, one
// revision each) into a fresh single etcdsql member on MariaDB twice: with
// `etcdsql import --finish`, and with `etcdctl make-mirror` (stopped once
// the target holds every key). It reports each one's keys per second and
// the peak memory (max RSS) of its process. Run it with
//
//	go test -run '^$' -bench ImportVersusMakeMirror -benchtime 1x ./internal/etcdimport
func BenchmarkImportVersusMakeMirror(b *testing.B) {
	n := 100000
	if s := os.Getenv("ETCDSQL_BENCH_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	etcdURL := difftest.StartEtcd(b)
	fill(b, etcdURL, n)
	bin := testserver.Build(b)
	for i := 0; i < b.N; i++ {
		for _, tool := range []string{"import", "mirror"} {
			target := testserver.StartProcess(b, b.TempDir(), "--mysql-dsn", mysqltest.NewDatabase(b))
			var cmd *exec.Cmd
			if tool == "import" {
				cmd = exec.Command(bin, "import", "--from-etcd", etcdURL, "--endpoints", target.URL, "--finish")
			} else {
				cmd = exec.Command("/usr/bin/etcdctl", "make-mirror", "--endpoints", etcdURL, target.URL)
				cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
			}
			var out lockedBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			var took time.Duration
			if tool == "import" {
				// Done when the import has finished.
				if err := <-exited; err != nil {
					b.Fatalf("import: %v\n%s", err, out.String())
				}
				took = time.Since(start)
				close(exited)
			}
			waitKeys(b, target.URL, n, exited, &out)
			if tool == "mirror" {
				took = time.Since(start)
				cmd.Process.Signal(syscall.SIGTERM)
				<-exited
			}
			peak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB
			b.ReportMetric(float64(n)/took.Seconds(), tool+"-keys/s")
			b.ReportMetric(float64(peak)/1024, tool+"-peak-MiB")
			b.Logf("%s: %d keys in %v (%.0f keys/s), peak RSS %.1f MiB", tool, n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(peak)/1024)
			target.Kill()
		}
	}
}

// fill puts n keys of 1 KiB into etcd, one revision each.
func fill(b *testing.B, url string, n int) {
	b.Helper()
	c := testserver.NewClient(b, url)
	val := string(make([]byte, 1024))
	var wg sync.WaitGroup
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.Put(ctx, fmt.Sprintf("/apisix/routes/%08d", i), val)
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// waitKeys waits until the target holds n keys; a tool that exits first
// has failed, unless it left them all.
func waitKeys(b *testing.B, url string, n int, exited <-chan error, out *lockedBuffer) {
	b.Helper()
	c := testserver.NewClient(b, url)
	count := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := c.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		if err != nil {
			return -1
		}
		return r.Count
	}
	deadline := time.Now().Add(20 * time.Minute)
	for time.Now().Before(deadline) {
		if count() >= int64(n) {
			return
		}
		select {
		case err, ok := <-exited:
			if count() >= int64(n) {
				return
			}
			if ok {
				b.Fatalf("the tool exited (%v) before the target held %d keys:\n%s", err, n, out.String())
			}
			b.Fatalf("the target holds %d keys after the import, want %d:\n%s", count(), n, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.Fatalf("target did not reach %d keys", n)
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}
