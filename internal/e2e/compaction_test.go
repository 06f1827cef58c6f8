package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

// waitCompacted polls until a read at rev is refused as compacted.
func waitCompacted(t *testing.T, c *clientv3.Client, rev int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Get(ctx, "k", clientv3.WithRev(rev))
		cancel()
		if err != nil && err.Error() == "etcdserver: mvcc: required revision has been compacted" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d not compacted within %v (last error %v)", rev, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAutoCompactionRevisionMode(t *testing.T) {
	s := testserver.Start(t, testserver.WithAutoCompaction(node.AutoCompaction{Mode: node.CompactionRevision, Revisions: 10, Interval: 50 * time.Millisecond}))
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last int64
	for i := 0; i < 50; i++ {
		r, err := c.Put(ctx, "k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	waitCompacted(t, c, last-11, 5*time.Second)
	// The retained window stays readable.
	if _, err := c.Get(ctx, "k", clientv3.WithRev(last-10)); err != nil {
		t.Fatalf("revision inside the retention window: %v", err)
	}
}

func TestAutoCompactionPeriodicMode(t *testing.T) {
	s := testserver.Start(t, testserver.WithAutoCompaction(node.AutoCompaction{Mode: node.CompactionPeriodic, Period: 400 * time.Millisecond, Interval: 50 * time.Millisecond}))
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := c.Put(ctx, "k", "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "k", "new"); err != nil {
		t.Fatal(err)
	}
	// Nothing younger than the period is compacted. Nothing to wait for
	// here, so the wait stays, checking all along.
	holdFor(t, 200*time.Millisecond, func() {
		if _, err := c.Get(ctx, "k", clientv3.WithRev(first.Header.Revision)); err != nil {
			t.Fatalf("compacted before the retention period: %v", err)
		}
	})
	if _, err := c.Put(ctx, "k", "newer"); err != nil {
		t.Fatal(err)
	}
	waitCompacted(t, c, first.Header.Revision, 5*time.Second)
}
