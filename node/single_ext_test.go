package node_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdsql/etcdsql/internal/testserver"
	"github.com/etcdsql/etcdsql/node"
)

// testCtx bounds one test's calls.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it returns nil or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true within %v: %v", what, timeout, err)
}

// httpGet returns the status and body of a GET.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// metric returns the value of an unlabelled metric in a Prometheus text
// exposition, failing the test when it is missing.
func metric(t *testing.T, body, name string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return v
		}
	}
	t.Fatalf("metric %s missing from /metrics", name)
	return 0
}

func TestSingleMemberWatch(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t)
	ctx := testCtx(t)

	first, err := c.Put(ctx, "/w/0", "before")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wc := c.Watch(wctx, "/w/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision), clientv3.WithPrevKV())
	if _, err := c.Put(ctx, "/w/0", "after"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(ctx, "/w/0"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 3 {
		select {
		case wr, ok := <-wc:
			if !ok || wr.Err() != nil {
				t.Fatalf("watch ended: %v", wr.Err())
			}
			for _, ev := range wr.Events {
				s := ev.Type.String() + " " + string(ev.Kv.Key) + "=" + string(ev.Kv.Value)
				if ev.PrevKv != nil {
					s += " prev=" + string(ev.PrevKv.Value)
				}
				got = append(got, s)
			}
		case <-ctx.Done():
			t.Fatalf("watch events so far %q", got)
		}
	}
	want := []string{"PUT /w/0=before", "PUT /w/0=after prev=before", "DELETE /w/0= prev=after"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestSingleMemberLeases(t *testing.T) {
	s := testserver.Start(t)
	c := s.Client(t)
	ctx := testCtx(t)

	long, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/l/long", "v", clientv3.WithLease(long.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := c.KeepAliveOnce(ctx, long.ID)
	if err != nil || ka.TTL != 60 {
		t.Fatalf("keepalive = %+v, %v", ka, err)
	}
	ttl, err := c.TimeToLive(ctx, long.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != 60 || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "/l/long" {
		t.Fatalf("timetolive = %+v, %v", ttl, err)
	}
	ls, err := c.Leases(ctx)
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != long.ID {
		t.Fatalf("leases = %+v, %v", ls, err)
	}
	if _, err := c.Revoke(ctx, long.ID); err != nil {
		t.Fatal(err)
	}
	if g, err := c.Get(ctx, "/l/long"); err != nil || len(g.Kvs) != 0 {
		t.Fatalf("key of revoked lease = %v, %v", g, err)
	}
	if _, err := c.Revoke(ctx, long.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("revoke again: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := c.KeepAliveOnce(ctx, long.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keepalive of revoked: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}

	// A lease nobody keeps alive expires, and its key goes with it.
	short, err := c.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/l/short", "v", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "short lease expires", func() error {
		g, err := c.Get(ctx, "/l/short")
		if err != nil {
			return err
		}
		if len(g.Kvs) != 0 {
			return errors.New("key still there")
		}
		return nil
	})
	if ttl, err := c.TimeToLive(ctx, short.ID); err != nil || ttl.TTL != -1 {
		t.Fatalf("timetolive of expired = %+v, %v", ttl, err)
	}
}

func TestSingleMemberAutoCompaction(t *testing.T) {
	s := testserver.Start(t, testserver.WithAutoCompaction(node.AutoCompaction{
		Mode: node.CompactionRevision, Revisions: 2, Interval: 50 * time.Millisecond,
	}))
	c := s.Client(t)
	ctx := testCtx(t)
	var last int64
	for i := 0; i < 6; i++ {
		r, err := c.Put(ctx, "/ac", strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	eventually(t, 10*time.Second, "auto-compaction to keep 2 revisions", func() error {
		_, err := c.Get(ctx, "/ac", clientv3.WithRev(last-3))
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return errors.New("old revision still readable")
		}
		return nil
	})
	if g, err := c.Get(ctx, "/ac", clientv3.WithRev(last)); err != nil || string(g.Kvs[0].Value) != "5" {
		t.Fatalf("latest revision after auto-compaction = %v, %v", g, err)
	}
}

func TestSingleMemberPeriodicAutoCompaction(t *testing.T) {
	s := testserver.Start(t, testserver.WithAutoCompaction(node.AutoCompaction{
		Mode: node.CompactionPeriodic, Period: 200 * time.Millisecond, Interval: 50 * time.Millisecond,
	}))
	c := s.Client(t)
	ctx := testCtx(t)
	first, err := c.Put(ctx, "/pc", "0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/pc", "1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "periodic auto-compaction", func() error {
		_, err := c.Get(ctx, "/pc", clientv3.WithRev(first.Header.Revision))
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return errors.New("first revision still readable")
		}
		return nil
	})
}

func TestSingleMemberRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	s := testserver.Start(t, testserver.WithDataDir(dir))
	c := s.Client(t)
	ctx := testCtx(t)
	lease, err := c.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	var rev int64
	for i := 0; i < 5; i++ {
		r, err := c.Put(ctx, "/r/"+strconv.Itoa(i), strconv.Itoa(i), clientv3.WithLease(lease.ID))
		if err != nil {
			t.Fatal(err)
		}
		rev = r.Header.Revision
	}
	id := s.Node.ClusterID()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("client server still serving after Close")
	}

	s2 := testserver.Start(t, testserver.WithDataDir(dir))
	c2 := s2.Client(t)
	g, err := c2.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Kvs) != 5 || g.Kvs[4].ModRevision != rev || g.Header.Revision != rev {
		t.Fatalf("after restart: %d keys, header rev %d, want 5 keys at rev %d", len(g.Kvs), g.Header.Revision, rev)
	}
	if g.Kvs[0].Lease != int64(lease.ID) {
		t.Fatalf("lease of key after restart %x, want %x", g.Kvs[0].Lease, lease.ID)
	}
	if s2.Node.ClusterID() != id {
		t.Fatalf("cluster id changed across restart: %d, was %d", s2.Node.ClusterID(), id)
	}
	r, err := c2.Put(ctx, "/r/next", "x")
	if err != nil || r.Header.Revision != rev+1 {
		t.Fatalf("put after restart = %v, %v (want revision %d)", r, err, rev+1)
	}
	if ttl, err := c2.TimeToLive(ctx, lease.ID); err != nil || ttl.TTL <= 0 {
		t.Fatalf("lease after restart = %+v, %v", ttl, err)
	}
}
