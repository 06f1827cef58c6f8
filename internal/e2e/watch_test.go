package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

// writeConcurrently puts total keys under prefix from writers goroutines
// and returns the revision before the first write.
func writeConcurrently(t *testing.T, c *clientv3.Client, prefix string, writers, total int) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start, err := c.Get(ctx, "rev-probe")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < total; i += writers {
				if _, err := c.Put(ctx, fmt.Sprintf("%s%06d", prefix, i), "v"); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("put: %v", err)
	}
	return start.Header.Revision
}

// checkWatchers waits until every watch channel delivered exactly the
// revisions first..first+total-1, in order, once each.
func checkWatchers(t *testing.T, chans []clientv3.WatchChan, first int64, total int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(chans))
	for i, ch := range chans {
		wg.Add(1)
		go func(i int, ch clientv3.WatchChan) {
			defer wg.Done()
			next := first
			timeout := time.After(3 * time.Minute)
			for next < first+int64(total) {
				select {
				case resp, ok := <-ch:
					if !ok {
						errs <- fmt.Errorf("watcher %d: channel closed at rev %d", i, next)
						return
					}
					if err := resp.Err(); err != nil {
						errs <- fmt.Errorf("watcher %d: %v", i, err)
						return
					}
					for _, ev := range resp.Events {
						if ev.Kv.ModRevision != next {
							errs <- fmt.Errorf("watcher %d: got rev %d, want %d (lost, duplicated or reordered)", i, ev.Kv.ModRevision, next)
							return
						}
						next++
					}
					if resp.Header.Revision < next-1 {
						errs <- fmt.Errorf("watcher %d: header revision %d below delivered %d", i, resp.Header.Revision, next-1)
						return
					}
				case <-timeout:
					errs <- fmt.Errorf("watcher %d: stuck at rev %d of %d", i, next, first+int64(total)-1)
					return
				}
			}
		}(i, ch)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestWatchThousandWatchersOneStream(t *testing.T) {
	if raceEnabled {
		t.Skip("scale test: runs in the plain (non-race) pass of make test")
	}
	const watchers, events = 1000, 10000
	s := testserver.Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rev := mustRev(t, c)
	chans := make([]clientv3.WatchChan, watchers)
	for i := range chans {
		// One context: clientv3 multiplexes all of them on one stream.
		chans[i] = c.Watch(ctx, "/w1/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	}
	first := writeConcurrently(t, c, "/w1/", 16, events) + 1
	if first != rev+1 {
		t.Fatalf("unexpected writes between watch and load: %d != %d", first, rev+1)
	}
	checkWatchers(t, chans, first, events)
}

func TestWatchThousandWatchersHundredStreams(t *testing.T) {
	if raceEnabled {
		t.Skip("scale test: runs in the plain (non-race) pass of make test")
	}
	const streams, perStream, events = 100, 10, 10000
	s := testserver.Start(t)
	c := s.Client(t)
	rev := mustRev(t, c)
	var chans []clientv3.WatchChan
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for st := 0; st < streams; st++ {
		// Distinct metadata puts each group on its own gRPC stream.
		sctx := metadata.AppendToOutgoingContext(ctx, "stream", fmt.Sprint(st))
		for i := 0; i < perStream; i++ {
			chans = append(chans, c.Watch(sctx, "/w2/", clientv3.WithPrefix(), clientv3.WithRev(rev+1)))
		}
	}
	first := writeConcurrently(t, c, "/w2/", 16, events) + 1
	checkWatchers(t, chans, first, events)
}

func TestWatchFromCompactedRevision(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var revs []int64
	for i := 0; i < 10; i++ {
		r, err := c.Put(ctx, "/c/k", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Header.Revision)
	}
	compactAt := revs[5]
	if _, err := c.Compact(ctx, compactAt); err != nil {
		t.Fatal(err)
	}
	wch := c.Watch(ctx, "/c/", clientv3.WithPrefix(), clientv3.WithRev(revs[1]))
	resp := <-wch
	if !resp.Canceled || resp.CompactRevision != compactAt {
		t.Fatalf("watch below compaction: canceled=%v compact_revision=%d, want canceled at %d", resp.Canceled, resp.CompactRevision, compactAt)
	}
	// A new watch from the compact revision is accepted and replays from it.
	wch = c.Watch(ctx, "/c/", clientv3.WithPrefix(), clientv3.WithRev(resp.CompactRevision))
	want := compactAt
	for want <= revs[len(revs)-1] {
		resp := <-wch
		if resp.Canceled || resp.Err() != nil {
			t.Fatalf("watch from compact revision cancelled: %v", resp.Err())
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision != want {
				t.Fatalf("got rev %d, want %d", ev.Kv.ModRevision, want)
			}
			want++
		}
	}
}

func mustRev(t *testing.T, c *clientv3.Client) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Get(ctx, "rev-probe")
	if err != nil {
		t.Fatal(err)
	}
	return r.Header.Revision
}

// A watch created without a start revision on a member that lags starts
// after every write acknowledged before it, on whichever member: its client
// never sees as an event a put it already saw acknowledged.
func TestWatchOnLaggingMemberStartsAfterAcknowledgedWrites(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{})
	leader := c.Leader(10 * time.Second)
	lag := (leader + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lc, fc := c.Client(leader), c.Client(lag)

	c.Isolate(lag)
	put, err := lc.Put(ctx, "/lag/acknowledged", "before")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	// clientv3's Watch returns once the watch is created: heal meanwhile.
	wchc := make(chan clientv3.WatchChan, 1)
	go func() { wchc <- fc.Watch(wctx, "/lag/", clientv3.WithPrefix(), clientv3.WithCreatedNotify()) }()
	time.Sleep(300 * time.Millisecond) // the create reaches the lagging member
	c.Heal()
	wch := <-wchc
	created := <-wch
	if !created.Created {
		t.Fatalf("first watch response %+v, want the created notice", created)
	}
	if created.Header.Revision < put.Header.Revision {
		t.Fatalf("watch created at revision %d, before the acknowledged put at %d", created.Header.Revision, put.Header.Revision)
	}
	after, err := lc.Put(ctx, "/lag/after", "after")
	if err != nil {
		t.Fatal(err)
	}
	for resp := range wch {
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision <= put.Header.Revision {
				t.Fatalf("watch delivered %s at revision %d, acknowledged before the watch was created", ev.Kv.Key, ev.Kv.ModRevision)
			}
			if ev.Kv.ModRevision == after.Header.Revision {
				return
			}
		}
	}
	t.Fatal("watch ended before the put made after it")
}
