package node

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent callers share rounds, and every answer a caller gets was
// fetched after it asked: a round already in flight is never joined.
func TestCoalescerSharesRoundsFetchedAfterTheCall(t *testing.T) {
	var fetches, counter atomic.Uint64
	c := newCoalescer(func(ctx context.Context) (uint64, error) {
		fetches.Add(1)
		v := counter.Load()              // what the fetch "sees" when it starts
		time.Sleep(2 * time.Millisecond) // a fetch takes time, so callers overlap it
		return v, nil
	}, time.Second)
	const callers = 200
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			asked := counter.Add(1) // a write "committed" before the read
			got, err := c.do(context.Background())
			if err != nil || got < asked {
				errs <- "a read was answered by a round that started before it"
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if n := fetches.Load(); n >= callers/2 {
		t.Fatalf("%d fetches for %d concurrent callers: rounds are not shared", n, callers)
	}
	t.Logf("%d callers, %d fetches", callers, fetches.Load())
}
