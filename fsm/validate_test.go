package fsm

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func puts(keys ...string) []*pb.RequestOp {
	ops := make([]*pb.RequestOp, len(keys))
	for i, k := range keys {
		ops[i] = opPut(k, "v")
	}
	return ops
}

func TestValidate(t *testing.T) {
	lim := Limits{MaxKeyBytes: 8}
	long := strings.Repeat("k", 9)
	ops129 := puts(make([]string, 129)...)
	for i := range ops129 {
		ops129[i] = opPut(fmt.Sprintf("k%03d", i), "v")
	}
	nested := func(then, els []*pb.RequestOp) *pb.RequestOp {
		return opTxn(&pb.TxnRequest{Success: then, Failure: els})
	}
	for _, tt := range []struct {
		name string
		err  func() error
		want error
	}{
		{"range ok", func() error { return ValidateRange(&pb.RangeRequest{Key: []byte("a")}) }, nil},
		{"range empty key", func() error { return ValidateRange(&pb.RangeRequest{}) }, ErrEmptyKey},
		{"range unknown sort order sorts nothing", func() error { return ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 99}) }, nil},
		{"range unknown sort target", func() error { return ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortTarget: 99}) }, ErrInvalidSortOption},
		{"put ok", func() error { return ValidatePut(&pb.PutRequest{Key: []byte("12345678")}, lim) }, nil},
		{"put empty key", func() error { return ValidatePut(&pb.PutRequest{Value: []byte("v")}, lim) }, ErrEmptyKey},
		{"put key too long", func() error { return ValidatePut(&pb.PutRequest{Key: []byte(long)}, lim) }, ErrKeyTooLong},
		{"put long key, no bound", func() error { return ValidatePut(&pb.PutRequest{Key: []byte(long)}, Limits{}) }, nil},
		{"put ignore_value with value", func() error {
			return ValidatePut(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true, Value: []byte("v")}, lim)
		}, ErrValueProvided},
		{"put ignore_lease with lease", func() error {
			return ValidatePut(&pb.PutRequest{Key: []byte("a"), IgnoreLease: true, Lease: 1}, lim)
		}, ErrLeaseProvided},
		{"delete ok", func() error { return ValidateDeleteRange(&pb.DeleteRangeRequest{Key: []byte("a")}) }, nil},
		{"delete empty key", func() error { return ValidateDeleteRange(&pb.DeleteRangeRequest{RangeEnd: []byte("z")}) }, ErrEmptyKey},
		{"grant max TTL", func() error { return ValidateLeaseGrant(&pb.LeaseGrantRequest{TTL: MaxLeaseTTL}) }, nil},
		{"grant negative TTL is raised, not refused", func() error { return ValidateLeaseGrant(&pb.LeaseGrantRequest{TTL: -5}) }, nil},
		{"grant TTL too large", func() error { return ValidateLeaseGrant(&pb.LeaseGrantRequest{TTL: MaxLeaseTTL + 1}) }, ErrLeaseTTLTooLarge},
		{"txn 128 ops", func() error { return ValidateTxn(&pb.TxnRequest{Success: ops129[:128]}, lim) }, nil},
		{"txn 129 ops", func() error { return ValidateTxn(&pb.TxnRequest{Failure: ops129}, lim) }, ErrTooManyOps},
		{"txn 129 compares", func() error {
			cmps := make([]*pb.Compare, 129)
			for i := range cmps {
				cmps[i] = &pb.Compare{Key: []byte("a")}
			}
			return ValidateTxn(&pb.TxnRequest{Compare: cmps}, lim)
		}, ErrTooManyOps},
		{"nested txn shares the op budget", func() error {
			inner := &pb.TxnRequest{Success: puts("x", "y")}
			return ValidateTxn(&pb.TxnRequest{Success: append(puts(ops129Keys(127)...), opTxn(inner))}, lim)
		}, ErrTooManyOps},
		{"txn compare empty key", func() error { return ValidateTxn(&pb.TxnRequest{Compare: []*pb.Compare{{}}}, lim) }, ErrEmptyKey},
		{"txn put empty key", func() error { return ValidateTxn(&pb.TxnRequest{Success: puts("")}, lim) }, ErrEmptyKey},
		{"txn nested put key too long", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{nested(nil, puts(long))}}, lim)
		}, ErrKeyTooLong},
		{"txn range empty key", func() error { return ValidateTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opRange("", "")}}, lim) }, ErrEmptyKey},
		{"txn delete empty key", func() error { return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("", "z")}}, lim) }, ErrEmptyKey},
		{"txn op without request", func() error { return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{{}}}, lim) }, ErrKeyNotFound},
		{"txn two puts of a key", func() error { return ValidateTxn(&pb.TxnRequest{Success: puts("a", "a")}, lim) }, ErrDuplicateKey},
		{"txn put in deleted range", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opPut("b", "v")}}, lim)
		}, ErrDuplicateKey},
		{"txn put before delete of its key", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("a", "v"), opDel("a", "")}}, lim)
		}, ErrDuplicateKey},
		{"txn put at the end of a deleted range", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c"), opPut("c", "v")}}, lim)
		}, nil},
		{"txn delete to \\x00 binds nothing (etcd 3.4)", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "\x00"), opPut("b", "v")}}, lim)
		}, nil},
		{"txn delete to \\x00 beside a real range", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "\x00"), opDel("c", "e"), opPut("d", "v")}}, lim)
		}, ErrDuplicateKey},
		{"txn inverted delete range binds nothing", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("z", "b"), opPut("c", "v")}}, lim)
		}, nil},
		{"txn two deletes of a key", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", ""), opDel("a", "")}}, lim)
		}, nil},
		{"txn same key in both branches", func() error { return ValidateTxn(&pb.TxnRequest{Success: puts("a"), Failure: puts("a")}, lim) }, nil},
		{"nested same key in both branches", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{nested(puts("a"), puts("a"))}}, lim)
		}, nil},
		{"nested branch and outer put", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: append(puts("a"), nested(nil, puts("a")))}, lim)
		}, ErrDuplicateKey},
		{"outer delete binds nested put", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{nested(puts("b"), nil), opDel("a", "c")}}, lim)
		}, ErrDuplicateKey},
		{"nested delete binds a later nested put", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
				nested([]*pb.RequestOp{opDel("a", "c")}, nil), nested(puts("b"), nil)}}, lim)
		}, ErrDuplicateKey},
		{"nested delete does not bind an earlier nested put", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
				nested(puts("b"), nil), nested([]*pb.RequestOp{opDel("a", "c")}, nil)}}, lim)
		}, nil},
		{"nested delete binds the outer put", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("b", "v"), nested([]*pb.RequestOp{opDel("a", "c")}, nil)}}, lim)
		}, ErrDuplicateKey},
		{"then-branch delete does not bind the else branch", func() error {
			return ValidateTxn(&pb.TxnRequest{Success: []*pb.RequestOp{nested([]*pb.RequestOp{opDel("a", "c")}, puts("b"))}}, lim)
		}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) { wantErr(t, tt.name, tt.err(), tt.want) })
	}
}

func ops129Keys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%03d", i)
	}
	return keys
}

// refWrites is the duplicate check written the plain quadratic way, as
// etcd's checkIntervals reads: the reference checkWrites must agree with.
func refWrites(ops []*pb.RequestOp) (dels []span, puts map[string]bool, dup bool) {
	covered := func(k string) bool {
		for _, d := range dels {
			if d.start <= k && k < d.end {
				return true
			}
		}
		return false
	}
	for _, op := range ops {
		if v, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok {
			dels = append(dels, deleteSpan(v.RequestDeleteRange))
		}
	}
	puts = map[string]bool{}
	for _, op := range ops {
		v, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		dT, pT, d1 := refWrites(v.RequestTxn.Success)
		dE, pE, d2 := refWrites(v.RequestTxn.Failure)
		if d1 || d2 {
			return nil, nil, true
		}
		for k := range pT {
			if puts[k] || covered(k) {
				return nil, nil, true
			}
		}
		for k := range pE {
			if (puts[k] && !pT[k]) || covered(k) {
				return nil, nil, true
			}
		}
		for k := range pT {
			puts[k] = true
		}
		for k := range pE {
			puts[k] = true
		}
		dels = append(append(dels, dT...), dE...)
	}
	for _, op := range ops {
		if v, ok := op.Request.(*pb.RequestOp_RequestPut); ok {
			k := string(v.RequestPut.Key)
			if puts[k] || covered(k) {
				return nil, nil, true
			}
			puts[k] = true
		}
	}
	return dels, puts, false
}

// TestCheckWritesMatchesReference compares the O(n log² n) duplicate
// check with the quadratic reference on random nested transactions over a
// small key space, where conflicts are common.
func TestCheckWritesMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	key := func() string { return string(rune('a' + r.IntN(8))) }
	var gen func(depth int) []*pb.RequestOp
	gen = func(depth int) []*pb.RequestOp {
		ops := make([]*pb.RequestOp, r.IntN(5))
		for i := range ops {
			switch n := r.IntN(10); {
			case n < 4:
				ops[i] = opPut(key(), "v")
			case n < 6:
				ops[i] = opDel(key(), "")
			case n < 7:
				ends := []string{"\x00", key(), key() + "m"}
				ops[i] = opDel(key(), ends[r.IntN(len(ends))])
			case n < 8 && depth < 3:
				ops[i] = opTxn(&pb.TxnRequest{Success: gen(depth + 1), Failure: gen(depth + 1)})
			default:
				ops[i] = opRange(key(), "")
			}
		}
		return ops
	}
	dups := 0
	for i := 0; i < 20000; i++ {
		ops := gen(0)
		_, _, want := refWrites(ops)
		_, err := checkWrites(ops)
		if got := err != nil; got != want {
			t.Fatalf("case %d: checkWrites refused=%v (%v), reference refused=%v, for %v", i, got, err, want, ops)
		}
		if want {
			dups++
		}
	}
	if dups < 2000 || dups > 18000 {
		t.Fatalf("%d of 20000 cases were duplicates: the generator is too tame", dups)
	}
}

// deepOverlapTxn builds the request that made a quadratic check slow:
// nested transactions holding 13,500 point deletes and 13,500 puts, all
// distinct, and one more put of a key already put (707 KB, 27,000 leaves
// at depth three, 30 operations per list). Interleaved, every leaf list
// holds deletes and puts; otherwise the first half of the request holds
// only deletes and the second only puts, the worst case for a scan of the
// deletes.
func deepOverlapTxn(interleaved bool) *pb.TxnRequest {
	const fan = 30
	id := 0
	top := make([]*pb.RequestOp, 0, fan+1)
	for i := 0; i < fan; i++ {
		mid := make([]*pb.RequestOp, 0, fan)
		for j := 0; j < fan; j++ {
			leaf := make([]*pb.RequestOp, 0, fan)
			for k := 0; k < fan; k++ {
				del := k%2 == 0
				if !interleaved {
					del = i < fan/2
				}
				if del {
					leaf = append(leaf, opDel(fmt.Sprintf("deleted/%012d", id), ""))
				} else {
					leaf = append(leaf, opPut(fmt.Sprintf("written/%012d", id), ""))
				}
				id++
			}
			mid = append(mid, opTxn(&pb.TxnRequest{Success: leaf}))
		}
		top = append(top, opTxn(&pb.TxnRequest{Success: mid}))
	}
	top = append(top, opPut(fmt.Sprintf("written/%012d", id-1), ""))
	return &pb.TxnRequest{Success: top}
}

func TestDeepOverlapTxnRefusedFast(t *testing.T) {
	for _, interleaved := range []bool{true, false} {
		r := deepOverlapTxn(interleaved)
		start := time.Now()
		err := ValidateTxn(r, Limits{})
		took := time.Since(start)
		wantErr(t, "deep txn", err, ErrDuplicateKey)
		t.Logf("interleaved=%v: %d bytes refused in %v", interleaved, r.Size(), took)
		// A quadratic check took seconds (etcd 3.4: a quarter of one);
		// this one takes tens of milliseconds, so the bound leaves room
		// for a busy machine and the race detector.
		if took > 3*time.Second {
			t.Fatalf("refusing the deep txn took %v", took)
		}
	}
}

func BenchmarkValidateDeepOverlapTxn(b *testing.B) {
	for _, bc := range []struct {
		name        string
		interleaved bool
	}{{"interleaved", true}, {"deletes-then-puts", false}} {
		b.Run(bc.name, func(b *testing.B) {
			r := deepOverlapTxn(bc.interleaved)
			b.ReportAllocs()
			b.SetBytes(int64(r.Size()))
			for b.Loop() {
				if err := ValidateTxn(r, Limits{}); err != ErrDuplicateKey {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestApplyRefusesInvalidEntry commits, as raft would deliver them, entries
// that no door lets through: Apply refuses each in its Result, writes
// nothing, keeps the revision, and the next valid entry applies normally.
func TestApplyRefusesInvalidEntry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxKeyBytes = 3072
	h := newHarnessCfg(t, cfg)
	h.put("a", "1")
	long := []byte(strings.Repeat("k", 5000))
	for _, tt := range []struct {
		name string
		req  *pb.InternalRaftRequest
		want error
	}{
		{"put empty key", &pb.InternalRaftRequest{Put: &pb.PutRequest{Value: []byte("v")}}, ErrEmptyKey},
		{"put 5,000-byte key", &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: long}}, ErrKeyTooLong},
		{"delete empty key", &pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{RangeEnd: []byte{0}}}, ErrEmptyKey},
		{"txn put empty key", &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{opPut("b", "v"), opPut("", "v")}}}, ErrEmptyKey},
		{"txn nested long key in the branch not taken", &pb.InternalRaftRequest{Txn: &pb.TxnRequest{
			Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opPutReq(&pb.PutRequest{Key: long})}})},
		}}, ErrKeyTooLong},
		{"txn nested delete empty key", &pb.InternalRaftRequest{Txn: &pb.TxnRequest{
			Failure: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("", "\x00")}})},
		}}, ErrEmptyKey},
		{"lease TTL too large", &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 7, TTL: MaxLeaseTTL + 1}}, ErrLeaseTTLTooLarge},
	} {
		t.Run(tt.name, func(t *testing.T) {
			digest, count := h.s.Digest(), h.s.KeyCount()
			changed, rev := h.s.Changed()
			res := h.apply(tt.req)
			wantErr(t, tt.name, res.Err, tt.want)
			if h.s.Rev() != rev || h.s.Digest() != digest || h.s.KeyCount() != count || len(h.s.Leases()) != 0 {
				t.Fatalf("refused entry changed the store: rev %d -> %d, keys %d -> %d, %d leases",
					rev, h.s.Rev(), count, h.s.KeyCount(), len(h.s.Leases()))
			}
			select {
			case <-changed:
				t.Fatal("refused entry announced a change")
			default:
			}
		})
	}
	before := h.s.Rev()
	h.put("c", "2")
	h.wantRev(before + 1)
	h.mustGrant(7, 10)
	if kv := h.get("c"); kv == nil || kv.ModRevision != before+1 {
		t.Fatalf("valid put after refusals: got %v", kv)
	}
}
