package upgradetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/apisixsim"
)

// Load shape. The pace is the load itself (a steady trickle of writes while
// members are replaced), not a wait for anything; the counts bound each
// loop should the run take longer than planned.
const (
	adminEvery  = 100 * time.Millisecond
	adminMaxOps = 3000
	kvEvery     = 25 * time.Millisecond
	kvMaxOps    = 12000
	kvPrefix    = "/upgradetest/"
	routeIDs    = 50
)

// adminOp is one Admin API write and how it ended.
type adminOp struct {
	seq        int
	kind, id   string
	begin, end time.Time
	status     int
	detail     string // the Admin result's Detail
	err        error
}

// opDesc is the "desc" of Admin write seq.
func opDesc(seq int) string { return fmt.Sprintf("op-%d", seq) }

func (o adminOp) failed() bool { return o.err != nil || o.status >= 300 }

// adminWriter writes routes through APISIX's Admin API operations: a PUT of
// one of routeIDs routes, and every fifth write once they exist a PATCH
// (a compare-and-swap txn on mod_revision). Each value carries "desc":
// "op-<seq>", which ties an event back to its write.
type adminWriter struct {
	admin *apisixsim.Admin
	mu    sync.Mutex
	ops   []adminOp
}

func (w *adminWriter) run(ctx context.Context, stop <-chan struct{}) {
	paced(ctx, stop, adminEvery, adminMaxOps, func(seq int) {
		op := adminOp{seq: seq, kind: "PUT", id: fmt.Sprintf("r-%02d", seq%routeIDs), begin: time.Now()}
		desc := opDesc(seq)
		var res apisixsim.AdminResult
		if seq >= routeIDs && seq%5 == 0 {
			op.kind = "PATCH"
			res, op.err = w.admin.Patch(ctx, "routes", op.id, map[string]any{"desc": desc}, 0)
		} else {
			res, op.err = w.admin.Put(ctx, "routes", op.id, map[string]any{"uri": "/" + op.id, "desc": desc,
				"upstream": map[string]any{"type": "roundrobin", "nodes": map[string]any{"127.0.0.1:1980": 1}}}, 0)
		}
		op.end, op.status, op.detail = time.Now(), res.Status, res.Detail
		w.mu.Lock()
		w.ops = append(w.ops, op)
		w.mu.Unlock()
	})
}

// kvPut is one clientv3 put and how it ended.
type kvPut struct {
	key, value string
	begin, end time.Time
	rev        int64 // header revision of the reply, if acknowledged
	err        error
}

// kvWriter puts a new key each time through clientv3 (all members as
// endpoints) and records every acknowledgement.
type kvWriter struct {
	cli  *clientv3.Client
	mu   sync.Mutex
	puts []kvPut
}

func (w *kvWriter) run(ctx context.Context, stop <-chan struct{}) {
	paced(ctx, stop, kvEvery, kvMaxOps, func(seq int) {
		p := kvPut{key: fmt.Sprintf("%sk-%05d", kvPrefix, seq), value: fmt.Sprintf("v-%d", seq), begin: time.Now()}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := w.cli.Put(cctx, p.key, p.value)
		cancel()
		p.end, p.err = time.Now(), err
		if err == nil {
			p.rev = resp.Header.Revision
		}
		w.mu.Lock()
		w.puts = append(w.puts, p)
		w.mu.Unlock()
	})
}

// load runs both writers until stopped.
type load struct {
	admin *adminWriter
	kv    *kvWriter
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startLoad(ctx context.Context, admin *apisixsim.Admin, cli *clientv3.Client) *load {
	l := &load{admin: &adminWriter{admin: admin}, kv: &kvWriter{cli: cli}, stop: make(chan struct{})}
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		l.admin.run(ctx, l.stop)
	}()
	go func() {
		defer l.wg.Done()
		l.kv.run(ctx, l.stop)
	}()
	return l
}

// halt stops both writers and waits for them (idempotent).
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// acks counts the successful writes of each writer so far.
func (l *load) acks() (kv, admin int) {
	l.kv.mu.Lock()
	for _, p := range l.kv.puts {
		if p.err == nil {
			kv++
		}
	}
	l.kv.mu.Unlock()
	l.admin.mu.Lock()
	for _, op := range l.admin.ops {
		if !op.failed() {
			admin++
		}
	}
	l.admin.mu.Unlock()
	return kv, admin
}

// waitAcks waits until each writer has n successful writes.
func (l *load) waitAcks(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		kv, admin := l.acks()
		if kv >= n && admin >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v only %d clientv3 puts and %d Admin writes succeeded", timeout, kv, admin)
		}
		time.Sleep(pollEvery)
	}
}

// paced calls f with 0, 1, ... once per every, at most max times, until ctx
// ends or stop is closed.
func paced(ctx context.Context, stop <-chan struct{}, every time.Duration, max int, f func(seq int)) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for seq := 0; seq < max; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-tick.C:
		}
		f(seq)
	}
}
