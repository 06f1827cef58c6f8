package node

import (
	"fmt"
	"net"
	"net/url"

	"github.com/etcdsql/etcdsql/rpc"
	"github.com/etcdsql/etcdsql/sqlsink"
)

// MemberConfig is everything a running member needs: the node, the client
// server, and where clients connect.
type MemberConfig struct {
	Node Config
	RPC  rpc.Config
	// ListenClientURL is the URL the client port (gRPC and HTTP) binds,
	// e.g. http://127.0.0.1:2379.
	ListenClientURL string
}

// Member is a started node with its client server.
type Member struct {
	Node   *Node
	Server *rpc.Server
	// ClientAddr is the address the client listener is bound to.
	ClientAddr string

	listener net.Listener
	served   chan error
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

// StartMember starts a node and serves clients on ListenClientURL.
func StartMember(cfg MemberConfig) (*Member, error) {
	addr, err := HostPort(cfg.ListenClientURL)
	if err != nil {
		return nil, fmt.Errorf("node: listen client URL: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("node: listen on client address: %w", err)
	}
	if len(cfg.Node.ClientURLs) == 0 {
		cfg.Node.ClientURLs = []string{"http://" + l.Addr().String()}
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
		l.Close()
		return nil, fmt.Errorf("node: client port max key bytes %d differs from the store's %d", cfg.RPC.MaxKeyBytes, cfg.Node.FSM.MaxKeyBytes)
	}
	n, err := New(cfg.Node)
	if err != nil {
		l.Close()
		return nil, err
	}
	if cfg.RPC.Logger == nil {
		cfg.RPC.Logger = cfg.Node.Logger
	}
	srv, err := rpc.NewServer(n, cfg.RPC)
	if err != nil {
		l.Close()
		n.Close()
		return nil, err
	}
	m := &Member{Node: n, Server: srv, ClientAddr: l.Addr().String(), listener: l, served: make(chan error, 1)}
	go func() { m.served <- srv.Serve(l) }()
	if err := n.startupCheck(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// Done yields the client server's error if it stops on its own.
func (m *Member) Done() <-chan error { return m.served }

// Close hands leadership over, stops serving clients (watch streams end,
// so clients resume elsewhere from their last revision), then stops the
// node.
func (m *Member) Close() error {
	voters, _ := m.Node.configCounts()
	m.Node.lead.handOver(voters)
	m.Server.Close()
	m.listener.Close()
	return m.Node.Close()
}

// Crash stops the member without handing leadership over or saying
// goodbye in gossip: what the others see when its process dies. Tests use
// it.
func (m *Member) Crash() error {
	m.Server.Close()
	m.listener.Close()
	return m.Node.Close()
}
