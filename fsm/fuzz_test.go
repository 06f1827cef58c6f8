package fsm

import (
	"bytes"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// FuzzDecode: Decode never panics, and whatever it decodes encodes again
// into bytes that decode to the same encoding.
func FuzzDecode(f *testing.F) {
	for _, r := range fuzzSeedEntries() {
		data, err := Encode(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(r)
		if err != nil {
			t.Fatalf("Encode of a decoded entry: %v", err)
		}
		r2, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode of a re-encoded entry: %v", err)
		}
		enc2, err := Encode(r2)
		if err != nil {
			t.Fatalf("Encode of a re-decoded entry: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("re-encoding changed the entry:\n%x\n%x", enc, enc2)
		}
	})
}

// FuzzApply: a sequence of entries, each one length byte then the entry
// without its envelope byte, applied to two fresh stores, never panics and
// leaves equal results and equal state digests. Entries that do not decode,
// or that name a request the store does not know, are skipped: Apply
// refuses those (ErrUnknownEntry) and its caller stops.
func FuzzApply(f *testing.F) {
	var log []byte
	for _, r := range fuzzSeedEntries() {
		data, err := Encode(r)
		if err != nil {
			f.Fatal(err)
		}
		if len(data)-1 > 255 {
			f.Fatalf("seed entry of %d bytes does not fit a length byte", len(data)-1)
		}
		f.Add(append([]byte{byte(len(data) - 1)}, data[1:]...))
		log = append(append(log, byte(len(data)-1)), data[1:]...)
	}
	f.Add(log)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := DefaultConfig()
		cfg.MaxKeyBytes = 16
		a, b := newHarnessCfg(t, cfg), newHarnessCfg(t, cfg)
		idx := uint64(0)
		for len(data) > 0 {
			n := min(int(data[0]), len(data)-1)
			entry := append([]byte{entryVersion1}, data[1:1+n]...)
			data = data[1+n:]
			r, err := Decode(entry)
			if err != nil || !applicable(r) {
				continue
			}
			idx++
			ra, rb := a.s.Apply(idx, entry), b.s.Apply(idx, entry)
			if sa, sb := resultStr(ra), resultStr(rb); sa != sb {
				t.Fatalf("results differ for %v:\n%s\n%s", r, sa, sb)
			}
		}
		if a.s.Digest() != b.s.Digest() {
			t.Fatal("state digests differ")
		}
	})
}

// applicable reports whether Apply knows r: the no-op, or one of the
// requests it dispatches.
func applicable(r *pb.InternalRaftRequest) bool {
	return r.Size() == 0 || r.Put != nil || r.DeleteRange != nil || r.Txn != nil ||
		r.Compaction != nil || r.LeaseGrant != nil || r.LeaseRevoke != nil
}

// fuzzSeedEntries are small entries of every kind Apply knows, valid and
// not.
func fuzzSeedEntries() []*pb.InternalRaftRequest {
	return []*pb.InternalRaftRequest{
		{},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: 5}},
		{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("1"), Lease: 7}},
		{Put: &pb.PutRequest{Key: []byte("b"), Value: []byte("2"), PrevKv: true}},
		{Put: &pb.PutRequest{Key: []byte("a"), IgnoreValue: true}},
		{Put: &pb.PutRequest{Value: []byte("empty key")}},
		{Put: &pb.PutRequest{Key: []byte("a key longer than sixteen bytes")}},
		{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true}},
		{Txn: &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}},
			Success: []*pb.RequestOp{opPut("c", "3"), opDel("b", ""), opRange("a", "z")},
			Failure: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("d", "4")}})},
		}},
		{Compaction: &pb.CompactionRequest{Revision: 3}},
		{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 7}},
		{LeaseGrant: &pb.LeaseGrantRequest{ID: 8, TTL: MaxLeaseTTL + 1}},
	}
}
