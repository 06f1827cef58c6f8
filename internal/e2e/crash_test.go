package e2e

import (
	"context"
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

	acked := killUnderLoad(t, p, c, "/crash/", 500, putKey)

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
