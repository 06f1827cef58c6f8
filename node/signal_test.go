package node

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitForWakesOnChange(t *testing.T) {
	s := newSignal()
	stop := make(chan struct{})
	var v atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- waitFor(context.Background(), stop, s.changed, func() bool { return v.Load() >= 3 })
	}()
	for i := 1; i <= 3; i++ {
		v.Store(int64(i))
		s.fire()
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitFor did not return after the condition held and the signal fired")
	}

	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- waitFor(ctx, stop, s.changed, func() bool { return false }) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	go func() { done <- waitFor(context.Background(), stop, s.changed, func() bool { return false }) }()
	close(stop)
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Fatalf("stopped: %v", err)
	}
}
