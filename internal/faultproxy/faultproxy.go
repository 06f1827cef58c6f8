// Package faultproxy is a loopback TCP proxy for fault injection in tests.
//
// A Proxy forwards every connection it accepts to a target (Retarget changes
// it, as a load balancer switching backends does). Cut closes
// every open connection at once and makes the proxy refuse new ones (each is
// accepted and closed immediately, so a client sees EOF or a reset rather
// than a hang) until Restore. That models a peer that crashed or a network
// path that went away and came back, without touching the real server.
// Delay holds each reply from the target for a while: a slow server.
//
//	p := faultproxy.New(t, "127.0.0.1:3306")
//	db := open(p.Addr())
//	p.Cut()     // every query now fails fast
//	p.Restore() // and succeeds again on a new connection
package faultproxy

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dialTimeout bounds how long the proxy waits to reach the target for one
// accepted connection; on failure that connection is closed.
const dialTimeout = 5 * time.Second

// Proxy forwards TCP connections from Addr to a target. It is safe for
// concurrent use.
type Proxy struct {
	t      testing.TB
	target string
	ln     net.Listener

	ctx    context.Context // canceled by Close; aborts dials and backoff
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every connection goroutine

	accepted atomic.Int64
	delay    atomic.Int64 // a time.Duration each reply is held

	mu     sync.Mutex
	cut    bool
	closed bool
	links  map[*link]struct{} // open, proxied connection pairs
}

// link is one proxied connection: the client side accepted by the proxy and
// the server side it dialed.
type link struct {
	client, server net.Conn
	once           sync.Once
}

// close closes both sides; it is idempotent and unblocks both copies.
func (l *link) close() {
	l.once.Do(func() {
		l.client.Close()
		l.server.Close()
	})
}

// New starts a proxy listening on 127.0.0.1 on a free port that forwards to
// target (host:port). The proxy is closed when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		t:      t,
		target: target,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		links:  make(map[*link]struct{}),
	}
	p.wg.Go(p.acceptLoop)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's listen address, host:port, to give to clients in
// place of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is how many connections the proxy has accepted so far, including
// those it refused while cut.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Cut closes every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() { p.dropLinks(func() { p.cut = true }) }

// dropLinks makes a change under the lock and closes every open connection.
func (p *Proxy) dropLinks(change func()) {
	p.mu.Lock()
	change()
	links := p.links
	p.links = make(map[*link]struct{})
	p.mu.Unlock()
	for l := range links {
		l.close()
	}
}

// Delay holds every reply from the target (each piece the target sends,
// on every connection) for d before passing it on, from now on; 0 ends it.
func (p *Proxy) Delay(d time.Duration) { p.delay.Store(int64(d)) }

// Restore lets new connections through again after Cut. Connections cut
// earlier stay closed.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Retarget closes every open connection and sends new ones to target
// (host:port): a switch of the backend behind a load balancer.
func (p *Proxy) Retarget(target string) { p.dropLinks(func() { p.target = target }) }

// Close stops the listener, closes every connection and waits for all of the
// proxy's goroutines to return. It is idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	links := p.links
	p.links = nil
	p.mu.Unlock()

	p.cancel()
	p.ln.Close()
	for l := range links {
		l.close()
	}
	p.wg.Wait()
}

func (p *Proxy) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error such as EMFILE: back off briefly rather
			// than spin, as net/http does.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		p.accepted.Add(1)
		p.mu.Lock()
		refuse := p.cut || p.closed
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve dials the target for the accepted client and copies both ways until
// either side ends or the link is cut.
func (p *Proxy) serve(client net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", target)
	if err != nil {
		client.Close()
		if p.ctx.Err() == nil {
			p.t.Logf("faultproxy: dial %s: %v", target, err)
		}
		return
	}
	l := &link{client: client, server: server}

	// Register unless Cut or Close ran while we were dialing.
	p.mu.Lock()
	if p.cut || p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	var copies sync.WaitGroup
	copies.Go(func() { pipe(l, server, client, nil) })
	pipe(l, client, server, &p.delay)
	copies.Wait()
	l.close()

	p.mu.Lock()
	delete(p.links, l) // no-op if Cut or Close already took it
	p.mu.Unlock()
}

// pipe copies src to dst, holding each piece for delay (if set). When src
// ends cleanly it half-closes dst so the other direction can finish; on
// any error it closes the whole link.
func pipe(l *link, dst, src net.Conn, delay *atomic.Int64) {
	var err error
	if delay == nil {
		_, err = io.Copy(dst, src)
	} else {
		err = copyDelayed(dst, src, delay)
	}
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
	}
	l.close()
}

// copyDelayed is io.Copy that sleeps for delay before writing each piece it
// read; nil at src's EOF.
func copyDelayed(dst io.Writer, src io.Reader, delay *atomic.Int64) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if d := time.Duration(delay.Load()); d > 0 {
				time.Sleep(d)
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
