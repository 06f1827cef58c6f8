package fsm

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestCodecRoundTrip(t *testing.T) {
	reqs := []*pb.InternalRaftRequest{
		{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 5, PrevKv: true}},
		{Put: &pb.PutRequest{Key: []byte{0, 0xff}, IgnoreValue: true, IgnoreLease: true}},
		{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true}},
		{Txn: &pb.TxnRequest{
			Compare: []*pb.Compare{cmpOf("a", "b", pb.Compare_MOD, pb.Compare_LESS, int64(9))},
			Success: []*pb.RequestOp{opPut("a", "1"), opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opDel("x", "y")}})},
		}},
		{Compaction: &pb.CompactionRequest{Revision: 42}},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 60}},
		{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 7}},
	}
	for _, r := range reqs {
		data, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode(%v): %v", r, err)
		}
		if data[0] != entryVersion1 {
			t.Fatalf("envelope byte %d", data[0])
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if got.String() != r.String() {
			t.Fatalf("round trip: %v, want %v", got, r)
		}
		// The decoded request owns its bytes.
		for i := range data {
			data[i] = 0
		}
		if got.String() != r.String() {
			t.Fatalf("decoded request aliases the entry buffer")
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, _ := Encode(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("value")}})
	tests := map[string][]byte{
		"nil":             nil,
		"empty":           {},
		"unknown version": append([]byte{2}, good[1:]...),
		"version zero":    append([]byte{0}, good[1:]...),
		"truncated":       good[:len(good)-2],
		"garbage":         {entryVersion1, 0xff, 0xff, 0xff},
	}
	for name, data := range tests {
		if r, err := Decode(data); err == nil {
			t.Errorf("%s: Decode accepted it: %v", name, r)
		}
	}
}

func TestApplyNoopRecordsIndexOnly(t *testing.T) {
	h := newHarness(t)
	h.put("k", "v") // index 1
	before := h.s.Digest()
	noop, _ := Encode(&pb.InternalRaftRequest{})
	res, p := safeApply(h.s, 2, noop)
	if p != nil || res == nil || res.Err != nil {
		t.Fatalf("no-op: result %+v panic %v", res, p)
	}
	if h.s.AppliedIndex() != 2 || h.s.Digest() != before || h.s.Rev() != 2 {
		t.Fatalf("no-op changed state: applied %d rev %d", h.s.AppliedIndex(), h.s.Rev())
	}
}

// An entry this release cannot decode or does not know (a newer
// release's, or corrupt) is refused with ErrUnknownEntry and changes
// nothing: not the state, not the applied index.
func TestApplyRefusesUnknownEntries(t *testing.T) {
	unsupported, _ := Encode(&pb.InternalRaftRequest{Range: &pb.RangeRequest{Key: []byte("k")}})
	// A request kind from a newer version: a field this build does not know.
	future := append([]byte{entryVersion1}, 0xa2, 0xc7, 0x14, 0x00) // field 42100, empty bytes
	// A request etcd's message has but this release does not apply.
	auth, _ := Encode(&pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{}})
	tests := map[string][]byte{
		"undecodable":         {9, 9, 9},
		"empty":               nil,
		"newer envelope":      {2, 0x0a, 0x00},
		"unknown request":     unsupported,
		"future request":      future,
		"request not applied": auth,
	}
	for name, data := range tests {
		h := newHarness(t)
		h.put("k", "v") // index 1
		before := h.s.Digest()
		wait := h.s.AppliedWait()
		res, p := safeApply(h.s, 2, data)
		if p != nil {
			t.Errorf("%s: Apply panicked: %v", name, p)
			continue
		}
		if !errors.Is(res.Err, ErrUnknownEntry) {
			t.Errorf("%s: result %+v, want ErrUnknownEntry", name, res)
		}
		if h.s.AppliedIndex() != 1 || h.s.Digest() != before {
			t.Errorf("%s: a refused entry changed the store (applied %d)", name, h.s.AppliedIndex())
		}
		select {
		case <-wait:
			t.Errorf("%s: a refused entry woke the applied index's waiters", name)
		default:
		}
	}
}

func TestAppliedIndexAndSkipIndex(t *testing.T) {
	h := newHarness(t)
	wait := h.s.AppliedWait()
	h.put("a", "1") // index 1
	select {
	case <-wait:
	default:
		t.Fatal("AppliedWait not closed by Apply")
	}
	wait = h.s.AppliedWait()
	// Errors still advance the applied index.
	if res := h.revoke(77); res.Err == nil {
		t.Fatal("revoke of unknown lease succeeded")
	}
	select {
	case <-wait:
	default:
		t.Fatal("AppliedWait not closed by a failed Apply")
	}
	h.s.ApplyBatch([]Entry{{Index: 5, Skip: true}})
	if got := h.s.AppliedIndex(); got != 5 {
		t.Fatalf("after skipping index 5: %d", got)
	}
	h.s.ApplyBatch([]Entry{{Index: 3, Skip: true}}) // never goes back
	if got := h.s.AppliedIndex(); got != 5 {
		t.Fatalf("after skipping index 3: %d", got)
	}
	h.idx = 5
	h.put("b", "1") // index 6
	h.wantRev(3)
}

func TestFutureRequestDecodesAsUnknown(t *testing.T) {
	r, err := Decode([]byte{entryVersion1, 0xa2, 0xc7, 0x14, 0x00})
	if err != nil {
		t.Fatalf("a well-formed entry with an unknown field must decode: %v", err)
	}
	if r.Size() == 0 {
		t.Fatal("an unknown field must not look like a no-op")
	}
}
