package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// ack is one acknowledged write.
type ack struct {
	key string
	rev int64
}

// writeFunc writes key (the i-th write of a writer) and returns the
// revision the server acknowledged.
type writeFunc func(ctx context.Context, c *clientv3.Client, key string, i int) (int64, error)

func putKey(ctx context.Context, c *clientv3.Client, key string, _ int) (int64, error) {
	r, err := c.Put(ctx, key, key)
	if err != nil {
		return 0, err
	}
	return r.Header.Revision, nil
}

// killUnderLoad runs writers on unique keys under prefix, kills the
// process with SIGKILL once at least minAcked writes were acknowledged,
// and returns every acknowledged write. A writer stops at its first error:
// the server is gone, and that write's outcome is unknown.
func killUnderLoad(t *testing.T, p *testserver.Process, c *clientv3.Client, prefix string, minAcked int, write writeFunc) []ack {
	t.Helper()
	var mu sync.Mutex
	var acked []ack
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100000 && ctx.Err() == nil; i++ {
				key := fmt.Sprintf("%s%d/%06d", prefix, w, i)
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				rev, err := write(rctx, c, key, i)
				rcancel()
				if err != nil {
					return
				}
				mu.Lock()
				acked = append(acked, ack{key, rev})
				mu.Unlock()
			}
		}(w)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= minAcked || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Kill()
	cancel()
	wg.Wait()
	if len(acked) < minAcked {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}
	return acked
}
