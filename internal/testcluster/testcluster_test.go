package testcluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestFormWriteEverywhereFailover(t *testing.T) {
	c := Start(t, Options{})
	leader := c.Leader(10 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range c.Members {
		cl := c.Client(i)
		resp, err := cl.Put(ctx, fmt.Sprintf("k%d", i), "v")
		if err != nil {
			t.Fatalf("put via member %d: %v", i, err)
		}
		// A serializable read on the member that forwarded sees the write.
		g, err := cl.Get(ctx, fmt.Sprintf("k%d", i), clientv3.WithSerializable())
		if err != nil || len(g.Kvs) != 1 || g.Header.Revision < resp.Header.Revision {
			t.Fatalf("member %d: read own write: %v %v", i, g, err)
		}
	}
	for i := range c.Members {
		g, err := c.Client(i).Get(ctx, "k", clientv3.WithPrefix())
		if err != nil || g.Count != 3 {
			t.Fatalf("member %d: linearizable read: %v %v", i, g, err)
		}
	}
	ml, err := c.Client(0).MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("member list: %v %v", ml, err)
	}
	for _, m := range ml.Members {
		if len(m.ClientURLs) != 1 || m.IsLearner {
			t.Fatalf("member %s: %+v", m.Name, m)
		}
	}

	c.Crash(leader)
	start := time.Now()
	other := (leader + 1) % 3
	cl := c.Client(other)
	for {
		_, err := cl.Put(ctx, "after", "crash")
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no write after leader crash: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("first write %v after the leader crashed", time.Since(start))
	c.Restart(leader)
	g, err := c.Client(leader).Get(ctx, "after")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("restarted member: %v %v", g, err)
	}
}

// A member's log tail keeps the last tailLogBytes written.
func TestTailLog(t *testing.T) {
	var l tailLog
	for i := 0; i < 2000; i++ {
		fmt.Fprintf(&l, "line %04d of a member's log\n", i)
	}
	got := l.String()
	if len(got) != tailLogBytes {
		t.Fatalf("kept %d bytes, want %d", len(got), tailLogBytes)
	}
	if !strings.HasSuffix(got, "line 1999 of a member's log\n") || strings.Contains(got, "line 0000 ") {
		t.Fatalf("kept the wrong end: %q ... %q", got[:40], got[len(got)-40:])
	}
}
