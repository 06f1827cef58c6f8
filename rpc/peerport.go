package rpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// PeerPort is a member's peer port, all in one place with the internal
// service (peer.go): the listener, the mux, the service's server, and the
// cached connections to the other members' peer ports. The port carries
// two protocols: raft's, whose connections start with a message type byte
// (0-4), and the internal gRPC service's, whose connections start with
// HTTP/2's preface ("PRI * HTTP/2.0"). With TLS (the operator's
// certificates or the cluster key's) both run inside it, and only members
// complete the handshake. Safe for concurrent use.
type PeerPort struct {
	base   net.Listener
	mux    cmux.CMux
	raftL  net.Listener // raft's connections
	grpcL  net.Listener
	server *grpc.Server
	dial   func(ctx context.Context, addr string) (net.Conn, error)

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	done  chan struct{}
}

// ListenPeer listens on addr; dialer (nil: TCP) reaches other members,
// under tlsCfg when it is set. Route starts handing out connections.
func ListenPeer(addr string, tlsCfg *tls.Config, dialer func(ctx context.Context, addr string) (net.Conn, error)) (*PeerPort, error) {
	base, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	l := base
	if tlsCfg != nil {
		l = tls.NewListener(base, tlsCfg)
	}
	if dialer == nil {
		var d net.Dialer
		dialer = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	dial := dialer
	if tlsCfg != nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dialer(ctx, addr)
			if err != nil {
				return nil, err
			}
			cfg := tlsCfg.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName, _, _ = net.SplitHostPort(addr)
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		}
	}
	m := cmux.New(l)
	m.SetReadTimeout(10 * time.Second)
	p := &PeerPort{
		base:  base,
		mux:   m,
		raftL: m.Match(isRaftConn),
		grpcL: m.Match(cmux.Any()),
		dial:  dial,
		conns: map[string]*grpc.ClientConn{},
		done:  make(chan struct{}),
	}
	return p, nil
}

func isRaftConn(r io.Reader) bool {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return false
	}
	return b[0] != 'P'
}

// route starts handing connections to raft and the internal service;
// the service's connections wait until serve.
func (p *PeerPort) Route() {
	go func() {
		defer close(p.done)
		p.mux.Serve()
	}()
}

// serve answers the internal service (once raft runs).
func (p *PeerPort) Serve(b PeerBackend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.server = NewPeerServer(b)
	go p.server.Serve(p.grpcL)
}

// client returns a client of the member whose peer port is addr; the
// connection is kept for later calls.
func (p *PeerPort) Client(addr string) (*PeerClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cc, ok := p.conns[addr]; ok {
		return NewPeerClient(cc), nil
	}
	opts := append(PeerDialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), // TLS, if any, is in dial
		grpc.WithContextDialer(p.dial),
		// A member that restarts is back within seconds: reconnect soon
		// (gRPC's default backoff grows to minutes).
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}))
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("rpc: peer %s: %w", addr, err)
	}
	p.conns[addr] = cc
	return NewPeerClient(cc), nil
}

// redial makes the cached connection to addr dial again at once instead
// of after its backoff (a member that restarted is back): calls in flight
// on it go on.
func (p *PeerPort) Redial(addr string) {
	p.mu.Lock()
	cc := p.conns[addr]
	p.mu.Unlock()
	if cc != nil {
		cc.ResetConnectBackoff()
	}
}

func (p *PeerPort) Close() {
	p.mu.Lock()
	for addr, cc := range p.conns {
		cc.Close()
		delete(p.conns, addr)
	}
	server := p.server
	p.mu.Unlock()
	if server != nil {
		server.Stop()
	}
	p.mux.Close()
	p.base.Close()
}

// RaftListener accepts raft's connections on the peer port.
func (p *PeerPort) RaftListener() net.Listener { return p.raftL }

// Dial connects to another member's peer port (with the port's TLS).
func (p *PeerPort) Dial(ctx context.Context, addr string) (net.Conn, error) { return p.dial(ctx, addr) }
