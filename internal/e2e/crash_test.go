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

// TestCrashKeepsAcknowledgedWrites kills -9 the server in the middle of a
// stream of writes: every write it acknowledged survives the restart, and
// revisions continue from the last one.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	p := testserver.StartProcess(t, t.TempDir())
	c := testserver.NewClient(t, p.URL)

	type ack struct {
		key string
		rev int64
	}
	var mu sync.Mutex
	var acked []ack
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 100000 && ctx.Err() == nil; i++ {
				key := fmt.Sprintf("/crash/%d/%06d", w, i)
				rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
				r, err := c.Put(rctx, key, key)
				rcancel()
				if err != nil {
					return // the server is gone: unacknowledged
				}
				mu.Lock()
				acked = append(acked, ack{key, r.Header.Revision})
				mu.Unlock()
			}
		}(w)
	}
	// Kill once a good number of writes were acknowledged.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.Kill()
	cancel()
	wg.Wait()
	if len(acked) < 500 {
		t.Fatalf("only %d writes acknowledged before the kill", len(acked))
	}

	p.Restart(t)
	c2 := testserver.NewClient(t, p.URL)
	rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer rcancel()
	all, err := c2.Get(rctx, "/crash/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]int64, len(all.Kvs))
	for _, kv := range all.Kvs {
		got[string(kv.Key)] = kv.ModRevision
	}
	maxRev := int64(0)
	for _, a := range acked {
		if rev, ok := got[a.key]; !ok || rev != a.rev {
			t.Errorf("acknowledged write %s at rev %d: after restart present=%v rev=%d", a.key, a.rev, ok, rev)
		}
		maxRev = max(maxRev, a.rev)
	}
	if all.Header.Revision < maxRev {
		t.Fatalf("revision went backwards: %d after restart, %d acknowledged", all.Header.Revision, maxRev)
	}
	r, err := c2.Put(rctx, "/crash/after", "x")
	if err != nil {
		t.Fatal(err)
	}
	if r.Header.Revision != all.Header.Revision+1 {
		t.Fatalf("next revision %d, want %d", r.Header.Revision, all.Header.Revision+1)
	}
	t.Logf("%d acknowledged writes survived kill -9; revision continued at %d", len(acked), r.Header.Revision)
}
