package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testcluster"
	"github.com/etcdsql/etcdsql/internal/testserver"
)

func TestLeaseKeysLiveWhileKeptAliveAndExpireAfter(t *testing.T) {
	const ttl = 2
	s := testserver.Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	grant, err := c.Grant(ctx, ttl)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Put(ctx, fmt.Sprintf("/lease/k%d", i), "v", clientv3.WithLease(grant.ID)); err != nil {
			t.Fatal(err)
		}
	}
	wch := c.Watch(ctx, "/lease/", clientv3.WithPrefix(), clientv3.WithFilterPut())

	kaCtx, stopKA := context.WithCancel(ctx)
	ka, err := c.KeepAlive(kaCtx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	// Keepalives run for twice the TTL: the keys must stay.
	until := time.Now().Add(2 * ttl * time.Second)
	for time.Now().Before(until) {
		select {
		case resp := <-wch:
			t.Fatalf("keys deleted while kept alive: %v", resp.Events)
		case <-time.After(200 * time.Millisecond):
		}
		r, err := c.Get(ctx, "/lease/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || r.Count != 3 {
			t.Fatalf("while kept alive: count=%v err=%v", r.Count, err)
		}
	}
	ttlResp, err := c.TimeToLive(ctx, grant.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if len(ttlResp.Keys) != 3 || string(ttlResp.Keys[0]) != "/lease/k0" || ttlResp.GrantedTTL != ttl || ttlResp.TTL < 0 || ttlResp.TTL > ttl {
		t.Fatalf("time to live: %+v", ttlResp)
	}

	stopKA()
	stopped := time.Now()
	deleted := 0
	for deleted < 3 {
		select {
		case resp := <-wch:
			for _, ev := range resp.Events {
				if ev.Type != mvccpb.DELETE {
					t.Fatalf("unexpected event %v", ev)
				}
				deleted++
			}
		case <-time.After(ttl*time.Second + time.Second - time.Since(stopped)):
			t.Fatalf("only %d of 3 keys deleted within TTL+1s of the last keepalive", deleted)
		}
	}
	if el := time.Since(stopped); el > ttl*time.Second+time.Second {
		t.Fatalf("expiry took %v after keepalives stopped, want <= TTL+1s", el)
	}
	if r, _ := c.TimeToLive(ctx, grant.ID); r.TTL != -1 {
		t.Fatalf("expired lease still alive: TTL %d", r.TTL)
	}
}

func TestLeaseRevokeDeletesAtOnce(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	grant, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"/r/a", "/r/b"} {
		if _, err := c.Put(ctx, k, "v", clientv3.WithLease(grant.ID)); err != nil {
			t.Fatal(err)
		}
	}
	before := mustRev(t, c)
	rv, err := c.Revoke(ctx, grant.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rv.Header.Revision != before+1 {
		t.Fatalf("revoke revision %d, want %d (one revision for all keys)", rv.Header.Revision, before+1)
	}
	r, err := c.Get(ctx, "/r/", clientv3.WithPrefix())
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("after revoke: %v %v", r.Kvs, err)
	}
	wr := <-c.Watch(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithRev(rv.Header.Revision))
	if len(wr.Events) != 2 || wr.Events[0].Type != mvccpb.DELETE || wr.Events[1].Kv.ModRevision != rv.Header.Revision {
		t.Fatalf("revoke events: %v", wr.Events)
	}
	if _, err := c.Revoke(ctx, grant.ID); err == nil || err.Error() != "etcdserver: requested lease not found" {
		t.Fatalf("second revoke: %v", err)
	}
}

// A lease without keepalives is revoked, its keys deleted and the delete
// event sent, within 500 ms after its TTL, and the TTL runs from the grant:
// the key is put with the lease a second after the grant, is still there
// 300 ms before the TTL ends and gone 500 ms after it (counted from the
// grant's answer). On one member and on three (the writes and the watch on
// a follower).
func TestLeaseExpiresOnTime(t *testing.T) {
	t.Run("member", func(t *testing.T) {
		c := testserver.Start(t).Client(t)
		checkLeaseOnTime(t, c, c)
	})
	t.Run("cluster", func(t *testing.T) {
		tc := testcluster.Start(t, testcluster.Options{Size: 3})
		follower := (tc.Leader(10*time.Second) + 1) % 3
		checkLeaseOnTime(t, tc.Client(follower), tc.Client((follower+1)%3))
	})
}

// checkLeaseOnTime grants 2 s leases through c, and watches their keys
// through w, three times.
func checkLeaseOnTime(t *testing.T, c, w *clientv3.Client) {
	const ttl = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range 3 {
		key := fmt.Sprintf("/ttl/%d", round)
		wch := w.Watch(ctx, key, clientv3.WithCreatedNotify())
		<-wch
		sent := time.Now()
		grant, err := c.Grant(ctx, int64(ttl/time.Second))
		if err != nil {
			t.Fatal(err)
		}
		answered := time.Now()
		// A lease clock that started the TTL only when it first looked at
		// the lease (as when the key is attached) would keep it a second
		// longer.
		time.Sleep(time.Second)
		if _, err := c.Put(ctx, key, "v", clientv3.WithLease(grant.ID)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(sent.Add(ttl - 300*time.Millisecond)))
		if r, err := w.Get(ctx, key); err != nil || len(r.Kvs) != 1 {
			t.Fatalf("round %d: 300 ms before the TTL the key is gone (%v, %v)", round, r, err)
		}
		time.Sleep(time.Until(answered.Add(ttl + 500*time.Millisecond)))
		if r, err := w.Get(ctx, key); err != nil || len(r.Kvs) != 0 {
			t.Fatalf("round %d: 500 ms after the TTL the key is still there (%v, %v)", round, r, err)
		}
		var deleted time.Time
		for wr := range wch {
			if len(wr.Events) > 0 && wr.Events[0].Type == mvccpb.DELETE {
				deleted = time.Now() // already arrived: the lag is an upper bound
				break
			}
		}
		if deleted.IsZero() {
			t.Fatalf("round %d: no delete event", round)
		}
	}
}
