package fsm

import (
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The system of record's reads are bounded by revisions and by bytes, cut
// only between revisions, and always make progress.
func TestChangesSinceBounds(t *testing.T) {
	h := newHarness(t)
	big := strings.Repeat("v", 1000)
	h.put("a", big)                                                                       // 2
	h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("b", big), opPut("c", big)}}) // 3: two changes
	h.put("d", big)                                                                       // 4
	h.wantRev(4)
	s := h.s

	type read struct {
		after             int64
		maxRevs, maxBytes int
		wantUpTo          int64
		wantChanges       int
		wantComplete      bool
	}
	for _, r := range []read{
		{1, 1000, 1 << 20, 4, 4, true},
		{1, 2, 1 << 20, 3, 3, false},
		// The byte bound stops after the revision that reaches it...
		{1, 1000, 1000, 2, 1, false},
		{1, 1000, 1002, 3, 3, false},
		// ...never inside a revision, and a read holds at least one.
		{2, 1000, 1, 3, 2, false},
		{3, 1000, 0, 4, 1, true},
		{4, 1000, 1, 4, 0, true},
	} {
		ch, err := s.ChangesSince(r.after, r.maxRevs, r.maxBytes, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ch.UpTo != r.wantUpTo || len(ch.Changes) != r.wantChanges || ch.Complete != r.wantComplete {
			t.Errorf("ChangesSince(%d, %d, %d): up to %d, %d changes, complete %v; want %d, %d, %v",
				r.after, r.maxRevs, r.maxBytes, ch.UpTo, len(ch.Changes), ch.Complete, r.wantUpTo, r.wantChanges, r.wantComplete)
		}
		for i, c := range ch.Changes {
			if c.KV.ModRevision <= r.after || c.KV.ModRevision > ch.UpTo || (i > 0 && c.KV.ModRevision < ch.Changes[i-1].KV.ModRevision) {
				t.Errorf("ChangesSince(%d, ...): change %d at revision %d outside (%d, %d] or out of order", r.after, i, c.KV.ModRevision, r.after, ch.UpTo)
			}
		}
	}
}
