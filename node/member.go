package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// MemberConfig is everything a running member needs: the node, the client
// server, and where clients connect.
type MemberConfig struct {
	Node Config
	RPC  rpc.Config
	// ListenClientURLs are the URLs the client port (gRPC and HTTP on
	// each) binds, e.g. http://127.0.0.1:2379; https ones serve TLS with
	// ClientTLS.
	ListenClientURLs []string
	ClientTLS        *tls.Config
}

// Member is a started node with its client server.
type Member struct {
	Node   *Node
	Server *rpc.Server
	// ClientAddr is the address the first client listener is bound to;
	// ClientAddrs are every listener's, in the order of the URLs.
	ClientAddr  string
	ClientAddrs []string

	listeners       []net.Listener
	served          chan error
	shutdownTimeout time.Duration
	drainOnce       sync.Once
}

// HostPort extracts host:port from an http(s) URL.
func HostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse URL %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("URL %q: scheme must be http or https", raw)
	}
	if u.Port() == "" {
		return "", fmt.Errorf("URL %q: no port", raw)
	}
	return u.Host, nil
}

// StartMember starts a node and serves clients on ListenClientURLs.
func StartMember(cfg MemberConfig) (*Member, error) {
	ls, err := listenClients(cfg.ListenClientURLs, cfg.ClientTLS)
	if err != nil {
		return nil, err
	}
	closeAll := func() {
		for _, l := range ls {
			l.Close()
		}
	}
	var addrs []string
	for _, l := range ls {
		addrs = append(addrs, l.Addr().String())
	}
	if len(cfg.Node.ClientURLs) == 0 {
		cfg.Node.ClientURLs = advertised(cfg.ListenClientURLs, addrs)
	}
	// One key bound for the store and both doors: the sink's, so that no
	// committed entry holds a key the database cannot store.
	if cfg.Node.Sink != nil && cfg.Node.FSM.MaxKeyBytes == 0 {
		cfg.Node.FSM.MaxKeyBytes = sqlsink.MaxKeyBytes
	}
	if cfg.RPC.MaxKeyBytes == 0 {
		cfg.RPC.MaxKeyBytes = cfg.Node.FSM.MaxKeyBytes
	}
	if cfg.RPC.MaxKeyBytes != cfg.Node.FSM.MaxKeyBytes {
		closeAll()
		return nil, fmt.Errorf("node: client port max key bytes %d differs from the store's %d", cfg.RPC.MaxKeyBytes, cfg.Node.FSM.MaxKeyBytes)
	}
	n, err := New(cfg.Node)
	if err != nil {
		closeAll()
		return nil, err
	}
	if cfg.RPC.Logger == nil {
		cfg.RPC.Logger = cfg.Node.Logger
	}
	if cfg.RPC.SnapshotDir == "" {
		cfg.RPC.SnapshotDir = cfg.Node.DataDir
	}
	srv, err := rpc.NewServer(n, cfg.RPC)
	if err != nil {
		closeAll()
		n.Close()
		return nil, err
	}
	m := &Member{Node: n, Server: srv, ClientAddr: addrs[0], ClientAddrs: addrs, listeners: ls, served: make(chan error, len(ls)),
		shutdownTimeout: cfg.RPC.ShutdownTimeout}
	if m.shutdownTimeout <= 0 {
		m.shutdownTimeout = rpc.DefaultConfig().ShutdownTimeout
	}
	for i, l := range ls {
		if strings.HasPrefix(cfg.ListenClientURLs[i], "https://") {
			go func() { m.served <- srv.ServeTLS(l, cfg.ClientTLS) }()
		} else {
			go func() { m.served <- srv.Serve(l) }()
		}
	}
	if err := n.startupCheck(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// listenClients binds every client URL; https ones need tlsCfg (the
// server serves TLS on them).
func listenClients(urls []string, tlsCfg *tls.Config) ([]net.Listener, error) {
	if len(urls) == 0 {
		return nil, errors.New("node: no client URL to listen on")
	}
	var ls []net.Listener
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	for _, u := range urls {
		addr, err := HostPort(u)
		if err != nil {
			return fail(fmt.Errorf("node: listen client URL: %w", err))
		}
		secure := strings.HasPrefix(u, "https://")
		if secure && tlsCfg == nil {
			return fail(fmt.Errorf("node: TLS key/cert (--cert-file, --key-file) must be provided for client url %s", u))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fail(fmt.Errorf("node: listen on client address: %w", err))
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// advertised returns the client URLs to advertise when none are given:
// each listen URL with the address it was bound to (its port, if it
// asked for port 0).
func advertised(urls, addrs []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		scheme := "http://"
		if strings.HasPrefix(u, "https://") {
			scheme = "https://"
		}
		out[i] = scheme + addrs[i]
	}
	return out
}

// Done yields the client server's error if it stops on its own.
func (m *Member) Done() <-chan error { return m.served }

// Drain takes the member out of service, within ctx: /health answers 503
// at once (load balancers stop sending), leadership is handed over if this
// member leads, then the client server shuts down: no new connections,
// gRPC clients sent elsewhere, watch streams ended so that their clients
// resume on another member from their last revision, unary calls in
// flight finished (rpc.Server.Shutdown). The node keeps running (a member
// that leaves the cluster still needs it); Close stops it. Only the first
// call drains; later ones wait for it.
func (m *Member) Drain(ctx context.Context) {
	m.drainOnce.Do(func() { m.drain(ctx) })
}

func (m *Member) drain(ctx context.Context) {
	m.Server.StartDrain()
	log := m.Node.log.With("step", "drain")
	voters, _ := m.Node.configCounts()
	handed := make(chan struct{})
	go func() {
		defer close(handed)
		m.Node.lead.handOver(voters, m.Node.requests.waitIdle)
	}()
	select {
	case <-handed:
		// The new leader's first heartbeat tells every member at once:
		// once this one knows it, watch clients that move (and want a
		// leader) find one on the others too.
		if voters > 1 {
			if err := m.Node.WaitLeader(ctx); err != nil {
				log.Warn("no leader known before the client port closes", "err", err)
			}
		}
	case <-ctx.Done():
		log.Warn("leadership hand-over did not finish before the drain's deadline")
	}
	m.Server.Shutdown(ctx)
	m.closeListeners()
	log.Info("client port closed")
}

// Close drains the member (bounded by the client server's shutdown
// timeout, if it was not drained already), then stops the node.
func (m *Member) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), m.shutdownTimeout)
	m.Drain(ctx)
	cancel()
	return m.Node.Close()
}

func (m *Member) closeListeners() {
	for _, l := range m.listeners {
		l.Close()
	}
}

// Crash stops the member without handing leadership over or saying
// goodbye in gossip: what the others see when its process dies. Tests use
// it.
func (m *Member) Crash() error {
	m.Server.Close()
	m.closeListeners()
	return m.Node.Close()
}
