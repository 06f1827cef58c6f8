package benchload

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Dial returns a client for the endpoints.
func Dial(endpoints ...string) (*clientv3.Client, error) {
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          endpoints,
		DialTimeout:        5 * time.Second,
		MaxCallRecvMsgSize: 1 << 30,
		Logger:             zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("client for %v: %w", endpoints, err)
	}
	return c, nil
}

// Clients dials n clients, the i-th to endpoints[i%len(endpoints)] (so
// that a cluster's members share the load). Close them with CloseAll.
func Clients(n int, endpoints []string) ([]*clientv3.Client, error) {
	var cs []*clientv3.Client
	for i := range n {
		c, err := Dial(endpoints[i%len(endpoints)])
		if err != nil {
			CloseAll(cs)
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// CloseAll closes the clients.
func CloseAll(cs []*clientv3.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// Load bounds a closed-loop load: Workers goroutines, each issuing one
// request after the other over Conns connections (8 if zero), until Ops
// requests in all or Duration, whichever comes first.
type Load struct {
	Endpoints []string
	Workers   int
	Conns     int
	Ops       int
	Duration  time.Duration
}

// run calls op from l.Workers goroutines (worker w, its i-th call) and
// times each call.
func (l Load) run(ctx context.Context, op func(ctx context.Context, c *clientv3.Client, w int, i int) error) (Result, error) {
	conns := l.Conns
	if conns <= 0 {
		conns = 8
	}
	cs, err := Clients(min(conns, max(l.Workers, 1)), l.Endpoints)
	if err != nil {
		return Result{}, err
	}
	defer CloseAll(cs)
	ctx, cancel := context.WithTimeout(ctx, l.Duration)
	defer cancel()
	var n atomic.Int64
	lats := make([][]time.Duration, l.Workers)
	start := time.Now()
	err = parallel(l.Workers, func(w int) error {
		c := cs[w%len(cs)]
		for i := 0; n.Add(1) <= int64(l.Ops) && ctx.Err() == nil; i++ {
			t0 := time.Now()
			if err := op(ctx, c, w, i); err != nil {
				if ctx.Err() != nil {
					return nil // the load's time is up, or another worker failed
				}
				cancel()
				return err
			}
			lats[w] = append(lats[w], time.Since(t0))
		}
		return nil
	})
	elapsed := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	r := result(0, elapsed, lats...)
	r.Ops = len(r.Lat)
	return r, nil
}

// Value256 is the benchmarks' 256-byte value.
var Value256 = strings.Repeat("v", 256)

// Puts writes 256-byte values, each worker to its own keys.
func Puts(ctx context.Context, l Load) (Result, error) {
	return l.run(ctx, func(ctx context.Context, c *clientv3.Client, w, i int) error {
		_, err := c.Put(ctx, fmt.Sprintf("/bench/put/%d/%d", w, i), Value256)
		return err
	})
}

// Gets reads one key (written first), linearizable or serializable.
func Gets(ctx context.Context, l Load, serializable bool) (Result, error) {
	c, err := Dial(l.Endpoints...)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	if _, err := c.Put(ctx, "/bench/get", Value256); err != nil {
		return Result{}, err
	}
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	return l.run(ctx, func(ctx context.Context, c *clientv3.Client, _, _ int) error {
		r, err := c.Get(ctx, "/bench/get", opts...)
		if err == nil && len(r.Kvs) != 1 {
			err = fmt.Errorf("get /bench/get: %d keys", len(r.Kvs))
		}
		return err
	})
}

// CAS has each worker increment its own counter key with a transaction
// that compares the key's mod_revision with the one it last saw; a failed
// compare (none are expected: each key has one writer) reads the key
// again and counts as an operation too.
func CAS(ctx context.Context, l Load) (Result, error) {
	type counter struct {
		mod int64
		n   int
	}
	counters := make([]counter, l.Workers)
	return l.run(ctx, func(ctx context.Context, c *clientv3.Client, w, _ int) error {
		key := fmt.Sprintf("/bench/cas/%d", w)
		ct := &counters[w]
		r, err := c.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", ct.mod)).
			Then(clientv3.OpPut(key, fmt.Sprint(ct.n+1))).
			Else(clientv3.OpGet(key)).Commit()
		if err != nil {
			return err
		}
		if r.Succeeded {
			ct.mod, ct.n = r.Header.Revision, ct.n+1
			return nil
		}
		kvs := r.Responses[0].GetResponseRange().Kvs
		if len(kvs) != 1 {
			return fmt.Errorf("cas %s: compare failed and the key is missing", key)
		}
		ct.mod = kvs[0].ModRevision
		_, err = fmt.Sscan(string(kvs[0].Value), &ct.n)
		return err
	})
}
