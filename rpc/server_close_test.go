package rpc

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/fsm"
)

// The port's mux answers an HTTP/2 client's handshake before any server
// takes the connection, so a client that connected while the member stops
// takes the connection for ready. Close must end it: left open, every
// request the client sends on it waits for its deadline.
func TestCloseEndsConnectionsNoServerTook(t *testing.T) {
	s, err := fsm.New(fsm.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv, l := storeServer(t, s)
	go srv.Serve(l)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The HTTP/2 client preface and an empty SETTINGS frame; no request.
	if _, err := c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("no handshake answer: %v", err)
	}
	if hdr[3] != 0x4 {
		t.Fatalf("first frame of type %d, want SETTINGS", hdr[3])
	}

	srv.Close()
	l.Close()
	if _, err := io.Copy(io.Discard, c); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("the connection is still open 10 s after Close")
	}
}
