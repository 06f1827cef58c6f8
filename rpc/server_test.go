package rpc

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/etcdsql/etcdsql/fsm"
)

// A Close that comes before Serve has started (a member stopped right after
// it started) makes Serve return, and leaves no gateway connection open.
func TestCloseBeforeServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, _ := fsm.New(fsm.DefaultConfig())
	srv, l := storeServer(t, s)
	defer l.Close()
	srv.Close()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve after Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		// Serve serves on: stop it the way a member does, by closing the
		// listener, and fail.
		l.Close()
		<-served
		t.Fatal("Serve after Close still serving after 10 s")
	}
}
