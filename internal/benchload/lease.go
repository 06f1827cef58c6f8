package benchload

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseLoad is lease expiry lag: Leases leases of TTL each (granted one
// after the other, spread over Spread, with a key attached to each and no
// keepalives), and one watcher of their keys on the last endpoint.
type LeaseLoad struct {
	Endpoints []string
	Leases    int
	TTL       time.Duration // whole seconds
	Spread    time.Duration
}

// LeaseExpiry runs the load and returns, per lease, the lag from the end
// of its TTL (counted from when its grant was answered) to its key's
// DELETE event at the watcher. A lag can be negative if the server
// expires a lease early.
func LeaseExpiry(ctx context.Context, l LeaseLoad) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, l.TTL+l.Spread+30*time.Second)
	defer cancel()
	prefix := fmt.Sprintf("/bench/lease/%d/", time.Now().UnixNano())
	w, err := openWatchStream(ctx, l.Endpoints[len(l.Endpoints)-1], prefix, prefix[:len(prefix)-1]+"0", 1)
	if err != nil {
		return Result{}, err
	}
	defer w.c.Close()
	c, err := Dial(l.Endpoints[0])
	if err != nil {
		return Result{}, err
	}
	defer c.Close()

	var mu sync.Mutex
	ends := map[string]time.Time{} // key → its lease's TTL end
	var lags []time.Duration
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.receive(func(now time.Time, del bool, key []byte) bool {
			if !del {
				return true
			}
			mu.Lock()
			defer mu.Unlock()
			if end, ok := ends[string(key)]; ok {
				lags = append(lags, now.Sub(end))
			}
			return len(lags) < l.Leases
		})
	}()
	start := time.Now()
	for i := range l.Leases {
		time.Sleep(time.Until(start.Add(time.Duration(i) * l.Spread / time.Duration(l.Leases))))
		g, err := c.Grant(ctx, int64(l.TTL/time.Second))
		if err != nil {
			return Result{}, err
		}
		key := fmt.Sprintf("%s%03d", prefix, i)
		mu.Lock()
		ends[key] = time.Now().Add(l.TTL)
		mu.Unlock()
		if _, err := c.Put(ctx, key, "v", clientv3.WithLease(g.ID)); err != nil {
			return Result{}, err
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	w.c.Close()
	<-done
	mu.Lock()
	defer mu.Unlock()
	r := result(len(lags), time.Since(start), lags)
	if len(lags) != l.Leases {
		return r, fmt.Errorf("%d of %d leases' DELETE events within %v of the TTL", len(lags), l.Leases, 30*time.Second)
	}
	return r, nil
}
