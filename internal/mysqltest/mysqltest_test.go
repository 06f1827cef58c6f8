package mysqltest_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/etcdsql/etcdsql/internal/faultproxy"
	"github.com/etcdsql/etcdsql/internal/mysqltest"
)

// TestMain fails the run if a driver or proxy goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func databaseExists(t *testing.T, name string) bool {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", mysqltest.Addr()
	db := open(t, cfg.FormatDSN())
	var n int
	err := db.QueryRowContext(t.Context(),
		"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", name).Scan(&n)
	if err != nil {
		t.Fatalf("look up database %s: %v", name, err)
	}
	return n == 1
}

func TestNewDatabase(t *testing.T) {
	var name string
	t.Run("use", func(t *testing.T) {
		dsn := mysqltest.NewDatabase(t)
		cfg, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatalf("ParseDSN(%q): %v", dsn, err)
		}
		if cfg.ParseTime || !cfg.InterpolateParams || cfg.MultiStatements {
			t.Errorf("DSN %q: parseTime=%v interpolateParams=%v multiStatements=%v, want false, true, false",
				dsn, cfg.ParseTime, cfg.InterpolateParams, cfg.MultiStatements)
		}
		if cfg.Timeout <= 0 || cfg.Timeout > 5*time.Second {
			t.Errorf("DSN %q: connect timeout %v, want a short one", dsn, cfg.Timeout)
		}
		if cfg.Addr != mysqltest.Addr() {
			t.Errorf("DSN %q: addr %q, want %q", dsn, cfg.Addr, mysqltest.Addr())
		}
		name = cfg.DBName
		if !strings.HasPrefix(name, "etcdsqltest_testnewdatabase_use_") || len(name) > 64 {
			t.Errorf("database name %q", name)
		}

		db := open(t, dsn)
		var cur string
		if err := db.QueryRowContext(t.Context(), "SELECT DATABASE()").Scan(&cur); err != nil {
			t.Fatal(err)
		}
		if cur != name {
			t.Errorf("connected to database %q, want %q", cur, name)
		}
		var tables int
		err = db.QueryRowContext(t.Context(),
			"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()").Scan(&tables)
		if err != nil {
			t.Fatal(err)
		}
		if tables != 0 {
			t.Errorf("new database has %d tables", tables)
		}
		// multiStatements=false: a second statement must be rejected.
		if _, err := db.ExecContext(t.Context(), "SELECT 1; SELECT 2"); err == nil {
			t.Error("a multi-statement query succeeded")
		}
	})
	if name == "" {
		return // skipped: no server
	}
	if databaseExists(t, name) {
		t.Errorf("database %s still exists after its test ended", name)
	}
}

func TestNewDatabaseUnique(t *testing.T) {
	a, b := mysqltest.NewDatabase(t), mysqltest.NewDatabase(t)
	if a == b {
		t.Fatalf("two calls returned the same DSN %q", a)
	}
}

func TestAddr(t *testing.T) {
	t.Setenv(mysqltest.AddrEnv, "")
	if got := mysqltest.Addr(); got != "127.0.0.1:3306" {
		t.Errorf("Addr() = %q with %s unset", got, mysqltest.AddrEnv)
	}
	t.Setenv(mysqltest.AddrEnv, "db.example:3307")
	if got := mysqltest.Addr(); got != "db.example:3307" {
		t.Errorf("Addr() = %q with %s=db.example:3307", got, mysqltest.AddrEnv)
	}
}

func TestDSNWithAddr(t *testing.T) {
	for _, dsn := range []string{
		"root@tcp(127.0.0.1:3306)/db1?interpolateParams=true&timeout=2s",
		"u:p%40ss@tcp([::1]:3306)/db1?parseTime=false",
		"u@unix(/run/mysqld/mysqld.sock)/db1",
	} {
		got := mysqltest.DSNWithAddr(dsn, "127.0.0.1:40000")
		before, err := mysql.ParseDSN(dsn)
		if err != nil {
			t.Fatal(err)
		}
		after, err := mysql.ParseDSN(got)
		if err != nil {
			t.Fatalf("DSNWithAddr(%q) = %q, which does not parse: %v", dsn, got, err)
		}
		if after.Net != "tcp" || after.Addr != "127.0.0.1:40000" {
			t.Errorf("DSNWithAddr(%q) = %q: net %q addr %q", dsn, got, after.Net, after.Addr)
		}
		before.Net, before.Addr = after.Net, after.Addr
		if before.FormatDSN() != after.FormatDSN() {
			t.Errorf("DSNWithAddr(%q) = %q changed more than the address", dsn, got)
		}
	}
}

// fakeTB records how NewDatabase gives up. Skip and Fatal end the calling
// goroutine, as the real ones do.
type fakeTB struct {
	testing.TB
	mu              sync.Mutex
	skipped, failed bool
	msg             string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.end(&f.skipped, format, args...)
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.end(&f.failed, format, args...)
}

func (f *fakeTB) end(flag *bool, format string, args ...any) {
	f.mu.Lock()
	*flag = true
	f.msg = format
	f.mu.Unlock()
	runtime.Goexit()
}

// TestUnreachable checks that a missing server skips a test locally and
// fails it under CI=true.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // connections to dead are now refused
	t.Setenv(mysqltest.AddrEnv, dead)

	for _, tc := range []struct {
		ci                 string
		wantSkip, wantFail bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantFail: true},
	} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			mysqltest.NewDatabase(f)
		}()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Fatalf("CI=%q: NewDatabase hung on an unreachable server", tc.ci)
		}
		f.mu.Lock()
		if f.skipped != tc.wantSkip || f.failed != tc.wantFail {
			t.Errorf("CI=%q: skipped=%v failed=%v, want %v %v", tc.ci, f.skipped, f.failed, tc.wantSkip, tc.wantFail)
		}
		f.mu.Unlock()
	}
}

// TestThroughFaultProxy runs queries through a proxy, cuts it, expects
// queries to fail fast, restores it and expects queries to work again on the
// same *sql.DB.
func TestThroughFaultProxy(t *testing.T) {
	dsn := mysqltest.NewDatabase(t)
	p := faultproxy.New(t, mysqltest.Addr())
	db := open(t, mysqltest.DSNWithAddr(dsn, p.Addr()))
	ctx := t.Context()

	// A pinned connection shows what a caller holding one mid-use sees.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "CREATE TABLE kv (k VARCHAR(64) PRIMARY KEY, v BIGINT NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	// This runs on a second connection, which stays idle in the pool.
	insert := "INSERT INTO kv (k, v) VALUES (?, ?)"
	if _, err := db.ExecContext(ctx, insert, "a", 1); err != nil {
		t.Fatal(err)
	}
	if idle := db.Stats().Idle; idle != 1 {
		t.Fatalf("%d idle connections, want 1", idle)
	}

	p.Cut()
	before := p.Accepted()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err = db.ExecContext(qctx, insert, "b", 2)
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("insert through a cut proxy succeeded")
	}
	if elapsed > 2*time.Second {
		t.Errorf("insert through a cut proxy took %v to fail, want < 2s", elapsed)
	}
	t.Logf("pooled insert while cut: %q after %v, %d new connections refused; %s",
		err, elapsed, p.Accepted()-before, classify(err))

	start = time.Now()
	_, err = conn.ExecContext(qctx, insert, "b", 2)
	elapsed = time.Since(start)
	if err == nil {
		t.Fatal("insert on a pinned connection through a cut proxy succeeded")
	}
	if elapsed > 2*time.Second {
		t.Errorf("insert on a pinned connection took %v to fail, want < 2s", elapsed)
	}
	t.Logf("pinned insert while cut: %q after %v; %s", err, elapsed, classify(err))
	if err := conn.Close(); err != nil {
		t.Logf("closing the broken pinned connection: %v", err)
	}

	p.Restore()
	if _, err := db.ExecContext(ctx, insert, "b", 2); err != nil {
		t.Fatalf("insert after Restore: %v", err)
	}
	if n := count(t, db); n != 2 {
		t.Errorf("kv has %d rows after Restore, want 2", n)
	}

	// A cut between two uses of an idle connection is invisible: the
	// driver's liveness check finds the dead socket at checkout and
	// database/sql retries on a new connection.
	if idle := db.Stats().Idle; idle < 1 {
		t.Fatalf("%d idle connections, want at least 1", idle)
	}
	p.Cut()
	p.Restore()
	before = p.Accepted()
	if _, err := db.ExecContext(ctx, insert, "c", 3); err != nil {
		t.Fatalf("insert on the first use after Cut+Restore: %v", err)
	}
	t.Logf("first use after Cut+Restore succeeded on %d new connection(s)", p.Accepted()-before)
	if n := count(t, db); n != 3 {
		t.Errorf("kv has %d rows, want 3", n)
	}
}

func count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), "SELECT COUNT(*) FROM kv").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}

// classify names the well-known errors err wraps or equals.
func classify(err error) string {
	var kinds []string
	for _, k := range []struct {
		name string
		err  error
	}{
		{"driver.ErrBadConn", driver.ErrBadConn},
		{"mysql.ErrInvalidConn", mysql.ErrInvalidConn},
		{"io.EOF", io.EOF},
		{"io.ErrUnexpectedEOF", io.ErrUnexpectedEOF},
		{"context.DeadlineExceeded", context.DeadlineExceeded},
	} {
		if errors.Is(err, k.err) {
			kinds = append(kinds, k.name)
		}
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		kinds = append(kinds, "*net.OpError")
	}
	if len(kinds) == 0 {
		return "none of ErrBadConn/ErrInvalidConn/EOF/OpError"
	}
	return "is " + strings.Join(kinds, ", ")
}
