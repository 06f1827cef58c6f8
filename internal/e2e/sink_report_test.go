package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/internal/mysqltest"
	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// errorLog counts the Error records a member logs, by message.
type errorLog struct {
	slog.Handler
	mu   sync.Mutex
	msgs []string
}

func (h *errorLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.mu.Lock()
		h.msgs = append(h.msgs, r.Message)
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *errorLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorLogAttrs{h, h.Handler.WithAttrs(as)}
}

func (h *errorLog) errors() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// errorLogAttrs is an errorLog's handler with attributes: records still
// count in the errorLog.
type errorLogAttrs struct {
	root *errorLog
	slog.Handler
}

func (h *errorLogAttrs) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.root.mu.Lock()
		h.root.msgs = append(h.root.msgs, r.Message)
		h.root.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h *errorLogAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorLogAttrs{h.root, h.Handler.WithAttrs(as)}
}

// health reads a member's /health.
func health(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Health, Reason string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body.Reason
}

// metric reads one unlabelled series (or one with its labels written out)
// from a member's /metrics.
func metric(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no series %s in /metrics", series)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// poll waits up to 20 s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSinkReportsAnEntryTheDatabaseRefuses: an operator narrows kv.value,
// so the next put's batch fails with a data error (1406) that no retry
// cures. /health answers 503 with the reason, the metric is set, the log
// has one Error line however many retries fail, and writes are refused;
// once the operator widens the column again the sink stores the entry and
// everything is back to normal.
func TestSinkReportsAnEntryTheDatabaseRefuses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := mysqltest.NewDatabase(t)
	logs := &errorLog{Handler: slog.NewTextHandler(io.Discard, nil)}
	s := testserver.Start(t, testserver.WithMySQL(dsn), func(c *node.MemberConfig) { c.Node.Logger = slog.New(logs) })
	c := s.Client(t)
	if _, err := c.Put(ctx, "/small", "v"); err != nil {
		t.Fatal(err)
	}
	admin, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.ExecContext(ctx, "ALTER TABLE kv MODIFY value VARBINARY(8) NOT NULL"); err != nil {
		t.Fatal(err)
	}

	// Committed, but the database refuses it: the put is not acked.
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = c.Put(pctx, "/big", strings.Repeat("x", 100))
	pcancel()
	if err == nil {
		t.Fatal("put acked while the database refuses its value")
	}
	var reason string
	poll(t, "/health 503 with the reason", func() bool {
		code, r := health(t, s.URL)
		reason = r
		return code == http.StatusServiceUnavailable && strings.Contains(r, "MySQL error 1406")
	})
	if !strings.Contains(reason, "refuses") {
		t.Errorf("/health reason %q does not say the database refuses an entry", reason)
	}
	if v := metric(t, s.URL, "etcdsql_sink_permanent_failure"); v != 1 {
		t.Errorf("etcdsql_sink_permanent_failure = %v, want 1", v)
	}
	if _, err := c.Put(ctx, "/other", "v"); status.Code(err) != codes.Unavailable {
		t.Errorf("put while the database refuses an entry: %v, want Unavailable", err)
	}
	// Retries go on; the log said it once.
	failed := metric(t, s.URL, `etcdsql_sink_batches_total{result="error"}`)
	poll(t, "three more failed retries", func() bool {
		return metric(t, s.URL, `etcdsql_sink_batches_total{result="error"}`) >= failed+3
	})
	var refusals int
	for _, m := range logs.errors() {
		if strings.Contains(m, "refuses") {
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("%d Error lines about the refusal, want 1: %q", refusals, logs.errors())
	}

	// The operator widens the column: the sink stores the entry.
	if _, err := admin.ExecContext(ctx, "ALTER TABLE kv MODIFY value LONGBLOB NOT NULL"); err != nil {
		t.Fatal(err)
	}
	poll(t, "/health 200 after the fix", func() bool {
		code, _ := health(t, s.URL)
		return code == http.StatusOK
	})
	if code, r := health(t, s.URL); code != http.StatusOK || r != "" {
		t.Errorf("/health after the fix: %d %q", code, r)
	}
	if v := metric(t, s.URL, "etcdsql_sink_permanent_failure"); v != 0 {
		t.Errorf("etcdsql_sink_permanent_failure = %v after the fix, want 0", v)
	}
	r, err := c.Put(ctx, "/after", "v")
	if err != nil {
		t.Fatalf("put after the fix: %v", err)
	}
	st := checkDatabase(t, c, sqlsink.Config{MySQLDSN: dsn})
	if st.Revision != r.Header.Revision {
		t.Errorf("database at revision %d, the last put at %d", st.Revision, r.Header.Revision)
	}
}
