package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// watchCreates is a gateway watch body of n create requests, one per line:
// 8,000 of them make a body of about 350 KB, more than the 256 KiB that Go's
// HTTP server reads once a reply has begun.
func watchCreates(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		key := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "/gw/k%05d", i))
		fmt.Fprintf(&b, `{"create_request":{"key":%q}}`+"\n", key)
	}
	return b.Bytes()
}

// serverUsage is what a watch stream holds in the server's process.
type serverUsage struct {
	goroutines, fds, watchers int
}

func (u serverUsage) within(base serverUsage) bool {
	return u.goroutines <= base.goroutines && u.fds <= base.fds && u.watchers <= base.watchers
}

var (
	goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)
	watcherGauge   = regexp.MustCompile(`(?m)^etcd_debugging_mvcc_watcher_total (\d+)`)
)

// usage reads the goroutine count (pprof), open descriptors (/proc) and the
// watcher gauge (/metrics) of the server process p.
func usage(t *testing.T, p *testserver.Process) serverUsage {
	t.Helper()
	get := func(path string, re *regexp.Regexp) int {
		resp, err := http.Get(p.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			t.Fatalf("GET %s: no %v in %.200q", path, re, b)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	// Each GET's own connection is closed before the next, and the
	// counts are taken in the same order every time.
	http.DefaultClient.CloseIdleConnections()
	g := get("/debug/pprof/goroutine?debug=1", goroutineTotal)
	w := get("/metrics", watcherGauge)
	http.DefaultClient.CloseIdleConnections()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	if err != nil {
		t.Fatalf("read fds: %v", err)
	}
	return serverUsage{goroutines: g, fds: len(fds), watchers: w}
}

// TestGatewayWatchManyCreatesEndsWithConnection opens a gateway watch whose
// body holds 8,000 creates, as one body with a length and as a chunked body
// the client keeps open: every create is answered, and once the client
// closes its connection the server's goroutines, descriptors and watchers
// are back where they were within 5 s.
func TestGatewayWatchManyCreatesEndsWithConnection(t *testing.T) {
	p := testserver.StartProcess(t, t.TempDir())
	addr := strings.TrimPrefix(p.URL, "http://")
	const n = 8000
	body := watchCreates(n)

	// One gateway call first: the gateway dials its loopback gRPC
	// connection on first use and keeps it.
	resp, err := http.Post(p.URL+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"YQ=="}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			base := usage(t, p)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			go func() {
				if chunked {
					// The body is never ended: a client streaming requests.
					fmt.Fprintf(conn, "POST /v3/watch HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", addr, len(body), body)
					return
				}
				fmt.Fprintf(conn, "POST /v3/watch HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s", addr, len(body), body)
			}()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			lines := bufio.NewScanner(resp.Body)
			created := 0
			for created < n && lines.Scan() {
				if bytes.Contains(lines.Bytes(), []byte(`"created":true`)) {
					created++
				}
			}
			// Short of n, the stream is still closed below and must
			// release whatever it holds.
			if created != n {
				t.Errorf("%d created replies, want %d (scan: %v)", created, n, lines.Err())
			} else if u := usage(t, p); u.watchers != base.watchers+n {
				t.Errorf("watcher gauge %d with the stream open, want %d", u.watchers, base.watchers+n)
			}

			conn.Close()
			closed := time.Now()
			deadline := closed.Add(5 * time.Second)
			var u serverUsage
			for {
				u = usage(t, p)
				if u.within(base) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("5 s after the client closed: %+v, baseline %+v", u, base)
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Logf("released in %v: %+v (baseline %+v)", time.Since(closed).Round(time.Millisecond), u, base)
		})
	}
}
