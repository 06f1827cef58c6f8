package rpc

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/soheilhy/cmux"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
)

// Config configures the client-facing server.
type Config struct {
	// MaxRequestBytes is etcd's --max-request-bytes; gRPC accepts messages
	// up to this plus 512 KiB, as etcd does.
	MaxRequestBytes int
	// WatchProgressNotifyInterval is how often watchers that asked for
	// progress notifications get one while idle (etcd's default: 10 min).
	WatchProgressNotifyInterval time.Duration
	// LeaderLossTimeout is how long a member may be without a leader
	// before watch streams that require one (etcd's require-leader
	// metadata) end with "no leader"; etcd uses three election timeouts.
	LeaderLossTimeout time.Duration
	// ShutdownTimeout bounds how long Close waits for unary calls (and,
	// for node.Member's Close, the leadership hand-over before them).
	ShutdownTimeout time.Duration
	// MaxKeyBytes bounds the keys a put may write (0: no bound beyond the
	// request size); the SQL system of record cannot index longer ones.
	MaxKeyBytes int
	// EnablePprof serves Go's profiler under /debug/pprof/.
	EnablePprof bool
	// SnapshotDir is where Maintenance.Snapshot builds the file it sends
	// (removed once sent); os.TempDir() when empty.
	SnapshotDir string
	Logger      *slog.Logger
	// Registry receives the server's metrics; Gatherer serves /metrics.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer
}

// DefaultConfig returns etcd's defaults.
func DefaultConfig() Config {
	return Config{
		MaxRequestBytes:             1572864,
		WatchProgressNotifyInterval: 10 * time.Minute,
		ShutdownTimeout:             2 * time.Second,
		LeaderLossTimeout:           3 * time.Second,
	}
}

// Validate reports a configuration the server cannot run with.
func (c Config) Validate() error {
	if c.MaxRequestBytes <= 0 {
		return errors.New("rpc: max request bytes must be positive")
	}
	if c.WatchProgressNotifyInterval <= 0 {
		return errors.New("rpc: watch progress notify interval must be positive")
	}
	return nil
}

const grpcOverheadBytes = 512 * 1024

// Server serves gRPC and the HTTP/JSON gateway on one listener.
type Server struct {
	cfg     Config
	b       Backend
	log     *slog.Logger
	metrics *metrics

	// grpc serves clients on the ports; gwGRPC serves the HTTP gateway
	// alone, in memory, so that a draining member tells gRPC clients to
	// go elsewhere (GOAWAY) while the gateway still finishes the HTTP
	// requests in flight.
	grpc   *grpc.Server
	gwGRPC *grpc.Server
	health *health.Server

	draining    atomic.Bool   // /health answers 503
	stopStreams chan struct{} // closed when long-lived streams must end
	shutOnce    sync.Once
	shutDone    chan struct{} // closed when Shutdown has finished

	mu     sync.Mutex
	closed bool // Close was called; Serve must not start
	ports  []*port
	gw     *gateway // built by the first Serve
}

// port is one client listener being served: its mux splits gRPC from
// HTTP (nil on a TLS port, whose HTTP server does), and its tracker
// remembers its connections.
type port struct {
	http *http.Server
	mux  cmux.CMux
	l    *connTracker
}

// NewServer builds the services over b.
func NewServer(b Backend, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, b: b, log: log.With("component", "rpc"), metrics: newMetrics(cfg.Registry),
		health: health.NewServer(), stopStreams: make(chan struct{}), shutDone: make(chan struct{})}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.grpc = s.newGRPC(false)
	s.gwGRPC = s.newGRPC(true)
	return s, nil
}

// streamWorkers is how many goroutines a gRPC server keeps to run its
// streams (a request, or a watch); a stream that finds them all busy gets
// a goroutine of its own, as without them. A kept goroutine keeps the
// stack a handler grew: a new goroutine per unary request grew its stack
// on every request, which was 7.5% of a member's CPU under 64 writers.
const streamWorkers = 128

// newGRPC builds a gRPC server with every service; gateway marks the
// gateway's own, whose streams end cleanly on drain (the HTTP client sees
// the end of the body, not an error).
func (s *Server) newGRPC(gateway bool) *grpc.Server {
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.NumStreamWorkers(streamWorkers),
		// etcd's keepalive enforcement: clients pinging more often than
		// every 5 s, or without streams, get too_many_pings.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.metrics.unaryInterceptor, s.authUnary),
		grpc.ChainStreamInterceptor(s.authStream),
		grpc.ForceServerCodecV2(newCodec()),
	)
	pb.RegisterKVServer(g, &kvServer{s: s})
	pb.RegisterWatchServer(g, &watchServer{s: s, gateway: gateway})
	pb.RegisterLeaseServer(g, &leaseServer{s: s, gateway: gateway})
	pb.RegisterMaintenanceServer(g, &maintenanceServer{s: s})
	pb.RegisterClusterServer(g, &clusterServer{s: s})
	pb.RegisterAuthServer(g, &authServer{s: s})
	g.RegisterService(&importServiceDesc, s)
	healthpb.RegisterHealthServer(g, s.health)
	return g
}

// fill completes a response header as etcd's server does.
func (s *Server) fill(h *pb.ResponseHeader) {
	h.ClusterId = s.b.ClusterID()
	h.MemberId = s.b.MemberID()
	h.RaftTerm = s.b.Term()
	if h.Revision == 0 {
		h.Revision = s.b.Rev()
	}
}

// Serve serves l until Close. gRPC (HTTP/2 with content-type
// application/grpc) and HTTP/1.1 (etcd's JSON gateway, /health, /version,
// /metrics) share the port. Serve and ServeTLS may be called for several
// listeners at once.
func (s *Server) Serve(l net.Listener) error {
	tl := newConnTracker(l)
	m := cmux.New(tl)
	// "application/grpc" and its "+proto" (or other codec) forms.
	grpcL := m.MatchWithWriters(cmux.HTTP2MatchHeaderFieldPrefixSendSettings("content-type", "application/grpc"))
	httpL := m.Match(cmux.Any())
	hs, err := s.addPort(tl, m, nil)
	if hs == nil {
		return err
	}
	errc := make(chan error, 3)
	go func() { errc <- s.grpc.Serve(grpcL) }()
	go func() { errc <- hs.Serve(httpL) }()
	go func() { errc <- m.Serve() }()
	return serveResult(<-errc)
}

// ServeTLS serves l with TLS (cfg, see ClientTLS) until Close. One HTTP
// server takes every connection: HTTP/2 requests with content-type
// application/grpc go to gRPC, the rest (HTTP/1.1 or HTTP/2) to the
// gateway, as etcd serves its TLS port. (A mux that peeks at a TLS
// client's HTTP/2 headers would have to answer its SETTINGS first, which
// breaks the HTTP/2 server that gets a connection it did not match.)
func (s *Server) ServeTLS(l net.Listener, cfg *tls.Config) error {
	tl := newConnTracker(l)
	hs, err := s.addPort(tl, nil, cfg)
	if hs == nil {
		return err
	}
	return serveResult(hs.ServeTLS(tl, "", ""))
}

// addPort registers a listener's HTTP server; nil (and the error, if any)
// when the server is closed or the gateway cannot be built.
func (s *Server) addPort(tl *connTracker, m cmux.CMux, tlsCfg *tls.Config) (*http.Server, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Close came first and found nothing to stop.
		tl.Close()
		return nil, nil
	}
	gw, err := s.gateway()
	if err != nil {
		tl.Close()
		return nil, err
	}
	handler := gw.handler
	if tlsCfg != nil {
		handler = grpcOrHTTP(s.grpc, gw.handler)
	}
	hs := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		// APISIX pools keep-alive connections for 60 s; close idle ones
		// only well after that. No write timeout: watches stream forever.
		IdleTimeout: 5 * time.Minute,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// gRPC's own limit (MaxConcurrentStreams above) for its streams
		// over this server.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: math.MaxInt32},
	}
	s.ports = append(s.ports, &port{http: hs, mux: m, l: tl})
	return hs, nil
}

// grpcOrHTTP sends gRPC requests to g and the others to h.
func grpcOrHTTP(g *grpc.Server, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveResult is a server's end: nil when Close ended it.
func serveResult(err error) error {
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) || errors.Is(err, cmux.ErrListenerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("rpc: serve: %w", err)
}

// connTracker is the client listener as the port's mux sees it: it
// remembers every connection it accepted until the connection is closed.
// The mux answers a new HTTP/2 connection's handshake itself, before a
// server has it (to read the first request's content type), so a client
// that connects while the servers stop holds a connection it takes for
// ready and that no server will ever answer: its requests would hang until
// their deadline. Close (the listener's) stops accepting; closeConns ends
// whatever connection is left. Safe for concurrent use.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

func newConnTracker(l net.Listener) *connTracker {
	return &connTracker{Listener: l, conns: map[*trackedConn]struct{}{}}
}

func (t *connTracker) Accept() (net.Conn, error) {
	c, err := t.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
	return tc, nil
}

// closeConns closes every accepted connection still open.
func (t *connTracker) closeConns() {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}
