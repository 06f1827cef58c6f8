// Package mysqltest gives tests a fresh, uniquely named database on a
// MySQL or MariaDB server, dropped when the test ends.
//
// The server is 127.0.0.1:3306 (user root, empty password) unless the
// environment variable ETCDSQL_TEST_MYSQL_ADDR names another host:port. When
// the server cannot be reached the test is skipped, except under CI=true,
// where it fails: tests of the MySQL sink must run in CI, not silently skip.
package mysqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

const (
	// AddrEnv is the environment variable that overrides the server address.
	AddrEnv = "ETCDSQL_TEST_MYSQL_ADDR"
	// DefaultAddr is the server used when AddrEnv is unset.
	DefaultAddr = "127.0.0.1:3306"

	user = "root"
	// connectTimeout is the dial timeout written into every DSN, so a dead
	// server or a cut proxy fails a test in seconds, not minutes.
	connectTimeout = 2 * time.Second
	// adminTimeout bounds each administrative step (ping, create, drop).
	adminTimeout = 10 * time.Second
)

// Addr is the host:port of the test server: $ETCDSQL_TEST_MYSQL_ADDR, or
// 127.0.0.1:3306.
func Addr() string {
	if a := os.Getenv(AddrEnv); a != "" {
		return a
	}
	return DefaultAddr
}

// NewDatabase creates an empty database with a unique name on the test
// server and returns a go-sql-driver/mysql DSN for it (parseTime=false,
// interpolateParams=true, multiStatements=false, a 2 s connect timeout).
// The database is dropped when the test ends.
//
// If the server cannot be reached, NewDatabase skips the test, or fails it
// when the environment has CI=true.
func NewDatabase(t testing.TB) (dsn string) {
	t.Helper()
	addr := Addr()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()

	admin := sql.OpenDB(mustConnector(t, config(addr, "")))
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		msg := fmt.Sprintf("mysqltest: MySQL/MariaDB at %s (set %s to change) is not available: %v", addr, AddrEnv, err)
		if inCI() {
			t.Fatalf("%s; CI=true, so tests that need it fail rather than skip", msg)
		}
		t.Skipf("%s; skipping (set CI=true to fail instead)", msg)
	}

	name := databaseName(t)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)); err != nil {
		t.Fatalf("mysqltest: create database %s on %s: %v", name, addr, err)
	}
	t.Cleanup(func() {
		if err := dropDatabase(addr, name); err != nil {
			t.Errorf("mysqltest: %v", err)
		}
	})
	return config(addr, name).FormatDSN()
}

// DSNWithAddr returns dsn with its server address replaced by addr
// (host:port), over TCP: for example to route a connection through a proxy.
// It panics if dsn does not parse, which is a bug in the calling test.
func DSNWithAddr(dsn, addr string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		panic(fmt.Sprintf("mysqltest: DSNWithAddr: %v", err))
	}
	cfg.Net = "tcp"
	cfg.Addr = addr
	return cfg.FormatDSN()
}

// config is the driver configuration for database dbName ("" for none) on
// addr.
func config(addr, dbName string) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Net = "tcp"
	cfg.Addr = addr
	cfg.DBName = dbName
	cfg.ParseTime = false
	cfg.InterpolateParams = true
	cfg.MultiStatements = false
	cfg.Timeout = connectTimeout
	return cfg
}

func mustConnector(t testing.TB, cfg *mysql.Config) driver.Connector {
	t.Helper()
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatalf("mysqltest: driver config for %s: %v", cfg.Addr, err)
	}
	return c
}

// dropDatabase drops name on addr over a connection of its own, so it works
// whatever state the test left its connections in.
func dropDatabase(addr, name string) error {
	c, err := mysql.NewConnector(config(addr, ""))
	if err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if _, err := db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)); err != nil {
		return fmt.Errorf("drop database %s on %s: %w", name, addr, err)
	}
	return nil
}

// inCI reports whether the environment says this is a CI run (CI=true, as
// GitHub Actions, GitLab and most others set it).
func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// databaseName is "etcdsqltest_", a prefix of the test's name for whoever
// finds a leftover database, and 12 random hex digits; at most 64
// characters, MySQL's limit, and only [a-z0-9_], so it never needs escaping
// in practice.
func databaseName(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	hint := b.String()
	if len(hint) > 32 {
		hint = hint[:32]
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	return "etcdsqltest_" + hint + "_" + hex.EncodeToString(rnd[:])
}

// quoteIdent quotes a MySQL identifier with backticks.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}
