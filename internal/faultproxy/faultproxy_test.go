package faultproxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/etcdsql/etcdsql/internal/faultproxy"
)

// TestMain fails the run if a proxy or echo goroutine outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer starts a TCP server on loopback that echoes every connection
// until the client half-closes, and stops it (and waits for its goroutines)
// when the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads it back, failing the test unless the echo
// matches within 2 s.
func roundTrip(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	if err := echo(c, msg); err != nil {
		t.Fatal(err)
	}
}

// echo writes msg to c and reads the same bytes back within 2 s.
func echo(c net.Conn, msg []byte) error {
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { // ends by the deadline at the latest; awaited below
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	_, rerr := io.ReadFull(c, got)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("read: %w", rerr)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo of %d bytes came back different", len(msg))
	}
	return nil
}

// expectDead asserts that a read on c ends in EOF or an error within 1 s
// rather than a timeout.
func expectDead(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := c.Read(make([]byte, 1))
	if err == nil {
		t.Fatalf("read %d bytes from a cut connection", n)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("read on a cut connection hung until the deadline: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("read on a cut connection took %v", d)
	}
}

func TestForwardsBothWays(t *testing.T) {
	p := faultproxy.New(t, echoServer(t))
	const n = 8
	big := make([]byte, 1<<20)
	rand.Read(big)
	var wg sync.WaitGroup
	for range n {
		c := dial(t, p.Addr())
		wg.Go(func() {
			for _, msg := range [][]byte{[]byte("hello"), big} {
				if err := echo(c, msg); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := p.Accepted(); got != n {
		t.Errorf("Accepted() = %d, want %d", got, n)
	}
}

func TestHalfClosePropagates(t *testing.T) {
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	if _, err := c.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	if string(got) != "last words" {
		t.Fatalf("got %q after half-close", got)
	}
}

func TestCutAndRestore(t *testing.T) {
	p := faultproxy.New(t, echoServer(t))
	old := dial(t, p.Addr())
	roundTrip(t, old, []byte("before"))

	p.Cut()
	expectDead(t, old)

	// New connections are accepted and closed at once.
	refused := dial(t, p.Addr())
	expectDead(t, refused)
	if got := p.Accepted(); got != 2 {
		t.Errorf("Accepted() = %d, want 2", got)
	}

	p.Restore()
	roundTrip(t, dial(t, p.Addr()), []byte("after"))
	if got := p.Accepted(); got != 3 {
		t.Errorf("Accepted() = %d, want 3", got)
	}
}

func TestCloseEndsConnections(t *testing.T) {
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	roundTrip(t, c, []byte("x"))
	p.Close()
	expectDead(t, c)
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("dial succeeded after Close")
	}
	p.Close() // idempotent; t.Cleanup calls it again as well
}

func TestUnreachableTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close() // nothing listens there now: dials are refused

	p := faultproxy.New(t, target)
	expectDead(t, dial(t, p.Addr()))
}

// TestConcurrentCuts runs clients against a proxy that is being cut and
// restored, for the race detector and to catch deadlocks; after the last
// Restore the proxy must work again.
func TestConcurrentCuts(t *testing.T) {
	p := faultproxy.New(t, echoServer(t))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			msg := []byte("ping")
			buf := make([]byte, len(msg))
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(time.Second))
				for range 10 {
					if _, err := c.Write(msg); err != nil {
						break
					}
					if _, err := io.ReadFull(c, buf); err != nil {
						break
					}
				}
				c.Close()
			}
		})
	}
	// Flip the proxy while the clients run: the pace is the test.
	for range 50 {
		p.Cut()
		time.Sleep(time.Millisecond)
		p.Restore()
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	roundTrip(t, dial(t, p.Addr()), []byte("still alive"))
	if p.Accepted() < 2 {
		t.Errorf("Accepted() = %d, expected the clients to have connected", p.Accepted())
	}
}

// TestDelayHoldsReplies: with a delay set, an echo comes back intact and
// no sooner than the delay; set back to 0, it still comes back.
func TestDelayHoldsReplies(t *testing.T) {
	p := faultproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	const d = 150 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	roundTrip(t, c, []byte("slow"))
	if took := time.Since(start); took < d {
		t.Fatalf("echo with a %v delay came back after %v", d, took)
	}
	p.Delay(0)
	roundTrip(t, c, []byte("fast"))
}
