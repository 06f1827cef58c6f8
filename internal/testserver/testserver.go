// Package testserver starts etcdsql members for tests: in-process over real
// loopback TCP (Start), or as real processes of the etcdsql binary (Build,
// StartProcess) for tests that kill -9 them.
package testserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/etcdsql/etcdsql/node"
	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// Server is one in-process member.
type Server struct {
	*node.Member
	// URL is the client URL, e.g. http://127.0.0.1:41234.
	URL     string
	DataDir string
}

// Option adjusts a member's configuration before it starts.
type Option func(*node.MemberConfig)

// WithDataDir starts the member on an existing data dir (and its SQLite
// database, unless WithMySQL chose another).
func WithDataDir(dir string) Option {
	return func(c *node.MemberConfig) {
		c.Node.DataDir = dir
		if c.Node.Sink != nil && c.Node.Sink.MySQLDSN == "" {
			c.Node.Sink.SQLitePath = filepath.Join(dir, "etcdsql.db")
		}
	}
}

// WithMySQL makes a MySQL/MariaDB database the system of record.
func WithMySQL(dsn string) Option {
	return func(c *node.MemberConfig) { c.Node.Sink.MySQLDSN = dsn }
}

// WithAutoCompaction turns on automatic compaction.
func WithAutoCompaction(ac node.AutoCompaction) Option {
	return func(c *node.MemberConfig) { c.Node.AutoCompaction = ac }
}

// WithSinkAck sets the ack mode (sqlsink.AckSync or sqlsink.AckAsync).
func WithSinkAck(ack string) Option {
	return func(c *node.MemberConfig) { c.Node.Sink.Ack = ack }
}

// WithBcryptCost sets the cost passwords are hashed with (etcd's
// --bcrypt-cost).
func WithBcryptCost(cost int) Option {
	return func(c *node.MemberConfig) { c.Node.BcryptCost = cost }
}

// Start starts a member on 127.0.0.1 with random ports and fast raft
// timing, waits until it serves writes, and closes it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return start(t, nil, nil, opts)
}

// StartTLS is Start with the client port on https only, serving TLS with
// server (see rpc.ClientTLS.Config); client is what the readiness probe
// presents (a client certificate when the server requires one). URL is
// the https URL.
func StartTLS(t testing.TB, server, client *tls.Config, opts ...Option) *Server {
	t.Helper()
	return start(t, server, client, opts)
}

// TryStart is Start for a start that may fail: it returns the member's
// start error instead of failing the test.
func TryStart(t testing.TB, opts ...Option) (*Server, error) {
	t.Helper()
	return tryStart(t, nil, nil, opts)
}

func start(t testing.TB, server, client *tls.Config, opts []Option) *Server {
	t.Helper()
	s, err := tryStart(t, server, client, opts)
	if err != nil {
		t.Fatalf("start member: %v", err)
	}
	return s
}

func tryStart(t testing.TB, server, client *tls.Config, opts []Option) (*Server, error) {
	t.Helper()
	nc := node.DefaultConfig()
	nc.Name = "m1"
	nc.LogStore = node.TestLogStore()
	nc.DataDir = t.TempDir()
	nc.PeerAddr = "127.0.0.1:0"
	nc.HeartbeatTimeout = 200 * time.Millisecond
	nc.ElectionTimeout = 200 * time.Millisecond
	nc.LeaseRetryInterval = 100 * time.Millisecond
	if os.Getenv("ETCDSQL_TEST_LOG") != "" {
		nc.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	sc := sqlsink.DefaultConfig()
	sc.SQLitePath = filepath.Join(nc.DataDir, "etcdsql.db")
	nc.Sink = &sc
	rc := rpc.DefaultConfig()
	reg := prometheus.NewRegistry()
	nc.Registry, rc.Registry, rc.Gatherer = reg, reg, reg
	cfg := node.MemberConfig{Node: nc, RPC: rc, ListenClientURLs: []string{"http://127.0.0.1:0"}}
	scheme := "http"
	if server != nil {
		scheme = "https"
		cfg.ListenClientURLs, cfg.ClientTLS = []string{"https://127.0.0.1:0"}, server
	}
	for _, o := range opts {
		o(&cfg)
	}
	m, err := node.StartMember(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{Member: m, URL: scheme + "://" + m.ClientAddr, DataDir: cfg.Node.DataDir}
	t.Cleanup(func() { m.Close() })
	waitReady(t, newClient(t, client, s.URL), s.URL, 10*time.Second)
	return s, nil
}

// Client returns a clientv3 client for the member, closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	return NewClient(t, s.URL)
}

// NewClient returns a clientv3 client for the given endpoints, closed when
// the test ends.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	return newClient(t, nil, endpoints...)
}

// NewTLSClient is NewClient for https:// endpoints, with cfg as the TLS
// configuration (its certificate is the client certificate).
func NewTLSClient(t testing.TB, cfg *tls.Config, endpoints ...string) *clientv3.Client {
	t.Helper()
	return newClient(t, cfg, endpoints...)
}

// newClient is NewClient with TLS (nil for none).
func newClient(t testing.TB, tlsCfg *tls.Config, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          endpoints,
		TLS:                tlsCfg,
		DialTimeout:        5 * time.Second,
		DialOptions:        []grpc.DialOption{},
		MaxCallRecvMsgSize: 1 << 30,
		Logger:             zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("client for %v: %v", endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitReady polls until the endpoint answers a linearizable read, or fails
// the test after timeout. With authentication enabled, refusing a read
// without token is an answer too.
func WaitReady(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	waitReady(t, NewClient(t, url), url, timeout)
}

// WaitReadyTLS is WaitReady for an https:// URL, with cfg as the client's
// TLS configuration.
func WaitReadyTLS(t testing.TB, url string, cfg *tls.Config, timeout time.Duration) {
	t.Helper()
	waitReady(t, newClient(t, cfg, url), url, timeout)
}

func waitReady(t testing.TB, c *clientv3.Client, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = c.Get(ctx, "health")
		cancel()
		if err == nil || errors.Is(err, rpctypes.ErrUserEmpty) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("member %s not ready after %v: %v", url, timeout, err)
}
