package testcluster

import (
	"context"
	"errors"
	"net"
	"sync"
)

// Network is the peer network between members: every connection one
// member opens to another's peer port (raft and the internal service) goes
// through it, so a test can cut chosen pairs apart. Gossip is not cut:
// partitions are of the replication path.
type Network struct {
	mu      sync.Mutex
	addrs   map[string]int        // peer address -> member index
	blocked map[[2]int]bool       // unordered pairs, low index first
	conns   map[[2]int][]net.Conn // open connections per pair
}

func newNetwork() *Network {
	return &Network{addrs: map[string]int{}, blocked: map[[2]int]bool{}, conns: map[[2]int][]net.Conn{}}
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

var errPartitioned = errors.New("testcluster: partitioned")

// dialer returns member from's dial function.
func (nw *Network) dialer(from int) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		nw.mu.Lock()
		to, known := nw.addrs[addr]
		p := pair(from, to)
		cut := known && nw.blocked[p]
		nw.mu.Unlock()
		if cut {
			return nil, errPartitioned
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil || !known {
			return c, err
		}
		nw.mu.Lock()
		defer nw.mu.Unlock()
		if nw.blocked[p] {
			c.Close()
			return nil, errPartitioned
		}
		tc := &trackedConn{Conn: c, nw: nw, p: p}
		nw.conns[p] = append(nw.conns[p], tc)
		return tc, nil
	}
}

// trackedConn leaves the network's books when closed.
type trackedConn struct {
	net.Conn
	nw   *Network
	p    [2]int
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.nw.mu.Lock()
		l := c.nw.conns[c.p]
		for i, x := range l {
			if x == net.Conn(c) {
				c.nw.conns[c.p] = append(l[:i], l[i+1:]...)
				break
			}
		}
		c.nw.mu.Unlock()
	})
	return c.Conn.Close()
}

// cut blocks the pairs and closes their connections.
func (nw *Network) cut(pairs ...[2]int) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for _, p := range pairs {
		p = pair(p[0], p[1])
		nw.blocked[p] = true
		for _, c := range nw.conns[p] {
			c.(*trackedConn).Conn.Close()
		}
		delete(nw.conns, p)
	}
}

// heal unblocks every pair.
func (nw *Network) heal() {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	clear(nw.blocked)
}
