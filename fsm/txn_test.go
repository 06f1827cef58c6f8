package fsm

import (
	"fmt"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// rangeResp returns the range response of op i, failing if it is not one.
func rangeResp(t *testing.T, resp *pb.TxnResponse, i int) *pb.RangeResponse {
	t.Helper()
	if i >= len(resp.Responses) {
		t.Fatalf("txn response has %d ops, want op %d", len(resp.Responses), i)
	}
	rr := resp.Responses[i].GetResponseRange()
	if rr == nil {
		t.Fatalf("op %d: %T, want a range response", i, resp.Responses[i].Response)
	}
	return rr
}

func TestTxnCompareTargetsAndResults(t *testing.T) {
	h := newHarness(t)
	const lid = 7
	h.mustGrant(lid, 10)
	h.putLease("k", "m", lid) // 2
	h.putLease("k", "m", lid) // 3: k = "m", version 2, create 2, mod 3, lease 7
	h.put("other", "o")       // 4
	if kv := h.get("k"); kv.Version != 2 || kv.CreateRevision != 2 || kv.ModRevision != 3 || kv.Lease != lid {
		t.Fatalf("fixture k = %s", kvStr(kv))
	}

	// Operands below, equal to and above the stored value of each target.
	operands := map[pb.Compare_CompareTarget][3]any{
		pb.Compare_VALUE:   {"l", "m", "n"},
		pb.Compare_VERSION: {int64(1), int64(2), int64(3)},
		pb.Compare_CREATE:  {int64(1), int64(2), int64(3)},
		pb.Compare_MOD:     {int64(2), int64(3), int64(4)},
		pb.Compare_LEASE:   {int64(6), int64(7), int64(8)},
	}
	// want[rel][result]: rel 0 = operand below the stored value, 1 = equal,
	// 2 = above.
	results := []pb.Compare_CompareResult{pb.Compare_EQUAL, pb.Compare_NOT_EQUAL, pb.Compare_GREATER, pb.Compare_LESS}
	want := [3][4]bool{
		{false, true, true, false},
		{true, false, false, false},
		{false, true, false, true},
	}
	// On a missing key, revisions, version and lease are 0, so operands
	// -1, 0, 1 are below, equal and above; VALUE always fails.
	missingOperands := map[pb.Compare_CompareTarget][3]any{
		pb.Compare_VALUE:   {"", "", "a"},
		pb.Compare_VERSION: {int64(-1), int64(0), int64(1)},
		pb.Compare_CREATE:  {int64(-1), int64(0), int64(1)},
		pb.Compare_MOD:     {int64(-1), int64(0), int64(1)},
		pb.Compare_LEASE:   {int64(-1), int64(0), int64(1)},
	}

	type tcase struct {
		name    string
		c       *pb.Compare
		succeed bool
	}
	var cases []tcase
	for _, target := range []pb.Compare_CompareTarget{pb.Compare_VALUE, pb.Compare_VERSION, pb.Compare_CREATE, pb.Compare_MOD, pb.Compare_LEASE} {
		for rel := 0; rel < 3; rel++ {
			for ri, result := range results {
				op := operands[target][rel]
				cases = append(cases, tcase{
					name:    fmt.Sprintf("existing/%s/%s/%v", target, result, op),
					c:       cmpOf("k", "", target, result, op),
					succeed: want[rel][ri],
				})
				mop := missingOperands[target][rel]
				cases = append(cases, tcase{
					name:    fmt.Sprintf("missing/%s/%s/%v", target, result, mop),
					c:       cmpOf("missing", "", target, result, mop),
					succeed: target != pb.Compare_VALUE && want[rel][ri],
				})
			}
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := &pb.TxnRequest{
				Compare: []*pb.Compare{tc.c},
				Success: []*pb.RequestOp{opRange("k", "")},
				Failure: []*pb.RequestOp{opRange("other", "")},
			}
			// Through Apply (read-only, so no revision) and TxnReadOnly.
			applied := h.mustTxn(req)
			h.wantRev(4)
			ro, err := h.s.TxnReadOnly(req)
			if err != nil {
				t.Fatalf("TxnReadOnly: %v", err)
			}
			for name, resp := range map[string]*pb.TxnResponse{"apply": applied, "readonly": ro} {
				if resp.Succeeded != tc.succeed {
					t.Fatalf("%s: succeeded = %v, want %v", name, resp.Succeeded, tc.succeed)
				}
				wantKey := "other"
				if tc.succeed {
					wantKey = "k"
				}
				if got := keysOf(rangeResp(t, resp, 0).Kvs); len(got) != 1 || got[0] != wantKey {
					t.Fatalf("%s: branch read %q, want %q", name, got, wantKey)
				}
				if resp.Header.Revision != 4 {
					t.Fatalf("%s: header revision %d, want 4", name, resp.Header.Revision)
				}
			}
		})
	}
}

func TestTxnCompareWithRangeEnd(t *testing.T) {
	h := newHarness(t)
	h.put("p/a", "1") // 2
	h.put("p/b", "1") // 3
	h.put("p/c", "2") // 4
	h.put("q", "1")   // 5
	tests := []struct {
		name string
		c    *pb.Compare
		want bool
	}{
		{"all values equal", cmpOf("p/a", "p/c", pb.Compare_VALUE, pb.Compare_EQUAL, "1"), true},
		{"one value differs", cmpOf("p/", "p0", pb.Compare_VALUE, pb.Compare_EQUAL, "1"), false},
		{"none equal to 3", cmpOf("p/", "p0", pb.Compare_VALUE, pb.Compare_NOT_EQUAL, "3"), true},
		{"not-equal fails on one match", cmpOf("p/", "p0", pb.Compare_VALUE, pb.Compare_NOT_EQUAL, "2"), false},
		{"all created", cmpOf("p/", "p0", pb.Compare_CREATE, pb.Compare_GREATER, int64(0)), true},
		{"all created before 4", cmpOf("p/", "p0", pb.Compare_CREATE, pb.Compare_LESS, int64(4)), false},
		{"all created before 5", cmpOf("p/", "p0", pb.Compare_CREATE, pb.Compare_LESS, int64(5)), true},
		{"all mod above 1", cmpOf("p/", "p0", pb.Compare_MOD, pb.Compare_GREATER, int64(1)), true},
		{"all version 1", cmpOf("p/", "p0", pb.Compare_VERSION, pb.Compare_EQUAL, int64(1)), true},
		{"from key", cmpOf("p/b", "\x00", pb.Compare_VALUE, pb.Compare_EQUAL, "1"), false},
		{"from key versions", cmpOf("p/b", "\x00", pb.Compare_VERSION, pb.Compare_EQUAL, int64(1)), true},
		{"empty range compares as zero", cmpOf("r", "s", pb.Compare_VERSION, pb.Compare_EQUAL, int64(0)), true},
		{"empty range create", cmpOf("r", "s", pb.Compare_CREATE, pb.Compare_LESS, int64(1)), true},
		{"empty range value fails", cmpOf("r", "s", pb.Compare_VALUE, pb.Compare_NOT_EQUAL, "x"), false},
		{"everything mod <= 5", cmpOf("\x00", "\x00", pb.Compare_MOD, pb.Compare_LESS, int64(6)), true},
		{"everything value 1", cmpOf("\x00", "\x00", pb.Compare_VALUE, pb.Compare_EQUAL, "1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.mustTxn(&pb.TxnRequest{Compare: []*pb.Compare{tt.c}})
			if resp.Succeeded != tt.want {
				t.Fatalf("succeeded = %v, want %v", resp.Succeeded, tt.want)
			}
		})
	}
}

func TestTxnBranches(t *testing.T) {
	tests := []struct {
		name     string
		compares []*pb.Compare
		want     bool
	}{
		{"no compares", nil, true},
		{"one true", []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "1")}, true},
		{"one false", []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "2")}, false},
		{"all true", []*pb.Compare{
			cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "1"),
			cmpOf("a", "", pb.Compare_VERSION, pb.Compare_EQUAL, int64(1)),
			cmpOf("b", "", pb.Compare_CREATE, pb.Compare_EQUAL, int64(0)),
		}, true},
		{"last false", []*pb.Compare{
			cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "1"),
			cmpOf("a", "", pb.Compare_MOD, pb.Compare_GREATER, int64(2)),
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.put("a", "1") // 2
			resp := h.mustTxn(&pb.TxnRequest{
				Compare: tt.compares,
				Success: []*pb.RequestOp{opPut("s1", "x"), opPut("s2", "x")},
				Failure: []*pb.RequestOp{opPut("f1", "x")},
			})
			if resp.Succeeded != tt.want {
				t.Fatalf("succeeded = %v, want %v", resp.Succeeded, tt.want)
			}
			ran, skipped := []string{"s1", "s2"}, []string{"f1"}
			if !tt.want {
				ran, skipped = skipped, ran
			}
			if len(resp.Responses) != len(ran) {
				t.Fatalf("%d responses, want %d", len(resp.Responses), len(ran))
			}
			for i, k := range ran {
				pr := resp.Responses[i].GetResponsePut()
				if pr == nil || pr.Header.Revision != 3 {
					t.Fatalf("response %d = %v", i, resp.Responses[i])
				}
				if kv := h.get(k); kv == nil || kv.ModRevision != 3 {
					t.Fatalf("%s = %s, want written at 3", k, kvStr(kv))
				}
			}
			for _, k := range skipped {
				if kv := h.get(k); kv != nil {
					t.Fatalf("branch not taken wrote %s", kvStr(kv))
				}
			}
			if resp.Header.Revision != 3 {
				t.Fatalf("header revision %d, want 3", resp.Header.Revision)
			}
			h.wantRev(3)
		})
	}
}

func TestTxnNested(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1") // 2
	h.put("x", "1") // 3
	aIs := func(v string) *pb.Compare { return cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, v) }
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{aIs("1")},
		Success: []*pb.RequestOp{
			opPut("a", "2"),
			// Compares of nested transactions see the state before the
			// outer one: a is still "1" for them.
			opTxn(&pb.TxnRequest{
				Compare: []*pb.Compare{aIs("2")},
				Success: []*pb.RequestOp{opPut("n1", "saw-2")},
				Failure: []*pb.RequestOp{opPut("n1", "saw-1"), opRange("a", "")},
			}),
			opTxn(&pb.TxnRequest{
				Compare: []*pb.Compare{aIs("1")},
				Success: []*pb.RequestOp{
					opTxn(&pb.TxnRequest{
						Compare: []*pb.Compare{cmpOf("n1", "", pb.Compare_VERSION, pb.Compare_EQUAL, int64(0))},
						Success: []*pb.RequestOp{opPut("n3", "n1-missing-before")},
						Failure: []*pb.RequestOp{opPut("n3", "n1-existed-before")},
					}),
					opPut("n2", "yes"),
				},
				Failure: []*pb.RequestOp{opPut("n2", "no")},
			}),
			opDel("x", ""),
		},
		Failure: []*pb.RequestOp{opPut("outer", "failed")},
	}
	if !IsTxnReadOnly(&pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opRange("a", "")}})}}) {
		t.Fatal("nested read-only txn reported as writing")
	}
	if IsTxnReadOnly(req) {
		t.Fatal("IsTxnReadOnly(nested writing txn) = true")
	}
	resp := h.mustTxn(req)
	if !resp.Succeeded || len(resp.Responses) != 4 {
		t.Fatalf("outer: succeeded %v, %d responses", resp.Succeeded, len(resp.Responses))
	}
	n1 := resp.Responses[1].GetResponseTxn()
	if n1 == nil || n1.Succeeded || len(n1.Responses) != 2 {
		t.Fatalf("nested 1 = %v", resp.Responses[1])
	}
	// The range in the nested failure branch runs after the outer put.
	if got := rangeResp(t, n1, 1).Kvs; len(got) != 1 || string(got[0].Value) != "2" {
		t.Fatalf("nested range saw %s, want a=2", kvsStr(got))
	}
	n2 := resp.Responses[2].GetResponseTxn()
	if n2 == nil || !n2.Succeeded || len(n2.Responses) != 2 {
		t.Fatalf("nested 2 = %v", resp.Responses[2])
	}
	if n3 := n2.Responses[0].GetResponseTxn(); n3 == nil || !n3.Succeeded {
		t.Fatalf("nested 3 = %v", n2.Responses[0])
	}
	if dr := resp.Responses[3].GetResponseDeleteRange(); dr == nil || dr.Deleted != 1 {
		t.Fatalf("delete response = %v", resp.Responses[3])
	}
	want := map[string]string{"a": "2", "n1": "saw-1", "n2": "yes", "n3": "n1-missing-before"}
	for k, v := range want {
		kv := h.get(k)
		if kv == nil || string(kv.Value) != v || kv.ModRevision != 4 {
			t.Errorf("%s = %s, want %q at revision 4", k, kvStr(kv), v)
		}
	}
	for _, k := range []string{"x", "outer"} {
		if kv := h.get(k); kv != nil {
			t.Errorf("%s = %s, want missing", k, kvStr(kv))
		}
	}
	if resp.Header.Revision != 4 {
		t.Fatalf("header revision %d, want 4", resp.Header.Revision)
	}
	h.wantRev(4)
}

func TestTxnSeesItsOwnWrites(t *testing.T) {
	h := newHarness(t)
	h.put("k", "old") // 2
	h.put("z", "z")   // 3
	resp := h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
		opRange("k", ""), // 0: old, header 3
		opPutReq(&pb.PutRequest{Key: []byte("k"), Value: []byte("new"), PrevKv: true}), // 1
		opRange("k", ""), // 2: new, header 4
		opRangeReq(&pb.RangeRequest{Key: []byte("k"), Revision: 3}), // 3: historical: old
		opDel("nothing", ""), // 4: deletes nothing, header 4
		opPut("j", "1"),      // 5
		opRange("j", "l"),    // 6: j and k
		opDel("z", ""),       // 7
		opRangeReq(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true}), // 8: 2
	}})
	type exp struct {
		header int64
		kvs    []string // key=value
		count  int64
	}
	checks := map[int]exp{
		0: {3, []string{"k=old"}, 1},
		2: {4, []string{"k=new"}, 1},
		3: {4, []string{"k=old"}, 1},
		6: {4, []string{"j=1", "k=new"}, 2},
		8: {4, nil, 2},
	}
	for i, e := range checks {
		rr := rangeResp(t, resp, i)
		var got []string
		for _, kv := range rr.Kvs {
			got = append(got, string(kv.Key)+"="+string(kv.Value))
		}
		if rr.Header.Revision != e.header || !slices.Equal(got, e.kvs) || rr.Count != e.count {
			t.Errorf("op %d: header %d kvs %q count %d, want %d %q %d", i, rr.Header.Revision, got, rr.Count, e.header, e.kvs, e.count)
		}
	}
	pr := resp.Responses[1].GetResponsePut()
	if pr == nil || pr.Header.Revision != 4 || pr.PrevKv == nil || string(pr.PrevKv.Value) != "old" {
		t.Fatalf("put response %v", resp.Responses[1])
	}
	if dr := resp.Responses[4].GetResponseDeleteRange(); dr == nil || dr.Deleted != 0 || dr.Header.Revision != 4 {
		t.Fatalf("empty delete response %v", resp.Responses[4])
	}
	if dr := resp.Responses[7].GetResponseDeleteRange(); dr == nil || dr.Deleted != 1 || dr.Header.Revision != 4 {
		t.Fatalf("delete response %v", resp.Responses[7])
	}
	h.wantRev(4)
}

func TestTxnDeleteFirstThenRead(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1") // 2
	// A delete that removes nothing leaves reads at the old revision; the
	// first real change moves them to the transaction's revision.
	resp := h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
		opDel("missing", ""),
		opRange("a", ""),
		opDel("a", ""),
		opRange("a", ""),
	}})
	if rr := rangeResp(t, resp, 1); rr.Header.Revision != 2 || len(rr.Kvs) != 1 {
		t.Fatalf("range before delete: header %d kvs %s", rr.Header.Revision, kvsStr(rr.Kvs))
	}
	if rr := rangeResp(t, resp, 3); rr.Header.Revision != 3 || len(rr.Kvs) != 0 {
		t.Fatalf("range after delete: header %d kvs %s", rr.Header.Revision, kvsStr(rr.Kvs))
	}
	if dr := resp.Responses[0].GetResponseDeleteRange(); dr.Header.Revision != 2 {
		t.Fatalf("empty delete header %d, want 2", dr.Header.Revision)
	}
	h.wantRev(3)
}

func TestTxnOneRevisionForManyWrites(t *testing.T) {
	h := newHarness(t)
	h.put("d1", "x") // 2
	h.put("d2", "x") // 3
	var ops []*pb.RequestOp
	for i := 0; i < 50; i++ {
		ops = append(ops, opPut(fmt.Sprintf("k%02d", i), "v"))
	}
	ops = append(ops, opDel("d1", "d3"))
	resp := h.mustTxn(&pb.TxnRequest{Success: ops})
	if resp.Header.Revision != 4 {
		t.Fatalf("header revision %d, want 4", resp.Header.Revision)
	}
	h.wantRev(4)
	kvs := h.all(0)
	if len(kvs) != 50 {
		t.Fatalf("%d keys, want 50", len(kvs))
	}
	for _, kv := range kvs {
		if kv.ModRevision != 4 || kv.CreateRevision != 4 || kv.Version != 1 {
			t.Fatalf("%s, want written at 4", kvStr(kv))
		}
	}
	// The deletes are in the same revision too.
	if n := h.rng(&pb.RangeRequest{Key: []byte("d"), RangeEnd: []byte("e"), Revision: 3}).Count; n != 2 {
		t.Fatalf("d* at rev 3: %d keys, want 2", n)
	}
	// Watch replay shows one revision holding every change, in op order.
	ws := h.s.NewWatchStream()
	if _, _, err := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 4}); err != nil {
		t.Fatal(err)
	}
	evs, _ := collectAll(t, ws)
	if len(evs[0]) != 52 {
		t.Fatalf("%d events, want 52", len(evs[0]))
	}
	for i, ev := range evs[0] {
		if ev.Kv.ModRevision != 4 {
			t.Fatalf("event %d at revision %d", i, ev.Kv.ModRevision)
		}
		if i < 50 && (ev.Type != mvccpb.PUT || string(ev.Kv.Key) != fmt.Sprintf("k%02d", i)) {
			t.Fatalf("event %d = %s", i, evStr(ev))
		}
	}
	if evs[0][50].Type != mvccpb.DELETE || string(evs[0][51].Kv.Key) != "d2" {
		t.Fatalf("delete events %s, %s", evStr(evs[0][50]), evStr(evs[0][51]))
	}
}

func TestTxnReadOnlyDoesNotBumpRevision(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1") // 2
	ch, _ := h.s.Changed()
	reqs := []*pb.TxnRequest{
		{},
		{Success: []*pb.RequestOp{opRange("a", "")}},
		{Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "nope")}, Failure: []*pb.RequestOp{opRange("\x00", "\x00")}},
		// Writes in the branch not taken do not count.
		{Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "nope")}, Success: []*pb.RequestOp{opPut("b", "x")}},
		// A delete of nothing changes nothing.
		{Success: []*pb.RequestOp{opDel("missing", "")}},
	}
	for i, req := range reqs {
		resp := h.mustTxn(req)
		if resp.Header.Revision != 2 {
			t.Fatalf("txn %d: header revision %d, want 2", i, resp.Header.Revision)
		}
		h.wantRev(2)
	}
	select {
	case <-ch:
		t.Fatal("Changed fired for transactions that wrote nothing")
	default:
	}
	if kv := h.get("b"); kv != nil {
		t.Fatalf("branch not taken wrote %s", kvStr(kv))
	}

	// TxnReadOnly answers exactly as Apply would.
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VERSION, pb.Compare_EQUAL, int64(1))},
		Success: []*pb.RequestOp{opRange("a", ""), opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 1})}})},
	}
	ro, err := h.s.TxnReadOnly(req)
	if err != nil {
		t.Fatal(err)
	}
	ap := h.mustTxn(req)
	if ro.String() != ap.String() {
		t.Fatalf("TxnReadOnly = %v\nApply = %v", ro, ap)
	}
	if !ro.Succeeded || len(rangeResp(t, ro, 0).Kvs) != 1 || ro.Header.Revision != 2 {
		t.Fatalf("TxnReadOnly = %v", ro)
	}
}

func TestTxnFailedChecksChangeNothing(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.TxnRequest
		err  error
	}{
		{"unknown lease in chosen branch", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPut("a", "new"), opPut("b", "new"),
			opPutReq(&pb.PutRequest{Key: []byte("c"), Value: []byte("x"), Lease: 999}),
		}}, ErrLeaseNotFound},
		{"unknown lease in chosen failure branch", &pb.TxnRequest{
			Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "nope")},
			Failure: []*pb.RequestOp{opDel("a", ""), opPutReq(&pb.PutRequest{Key: []byte("c"), Lease: 999})},
		}, ErrLeaseNotFound},
		{"unknown lease in chosen nested txn", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPut("a", "new"),
			opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opTxn(&pb.TxnRequest{
				Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "old")},
				Success: []*pb.RequestOp{opPutReq(&pb.PutRequest{Key: []byte("c"), Lease: 999})},
			})}}),
		}}, ErrLeaseNotFound},
		{"ignore_value on missing key", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPut("a", "new"), opPutReq(&pb.PutRequest{Key: []byte("missing"), IgnoreValue: true}),
		}}, ErrKeyNotFound},
		{"ignore_lease on missing key", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPut("a", "new"), opPutReq(&pb.PutRequest{Key: []byte("missing"), IgnoreLease: true}),
		}}, ErrKeyNotFound},
		{"range at a future revision", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPut("a", "new"), opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 6}),
		}}, ErrFutureRev},
		{"range at a compacted revision", &pb.TxnRequest{Success: []*pb.RequestOp{
			opPut("a", "new"), opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 2}),
		}}, ErrCompacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustGrant(1, 10)
			h.put("a", "x")     // 2
			h.put("a", "old")   // 3
			h.put("b", "old")   // 4
			h.put("pad", "pad") // 5
			h.mustCompact(3)
			before := h.s.Digest()
			ch, _ := h.s.Changed()
			res := h.txn(tt.req)
			wantErr(t, tt.name, res.Err, tt.err)
			if res.Txn != nil {
				t.Fatalf("failed txn returned a response")
			}
			h.wantRev(5)
			if h.s.Digest() != before {
				t.Fatal("failed txn changed the store")
			}
			select {
			case <-ch:
				t.Fatal("failed txn fired Changed")
			default:
			}
			if kv := h.get("a"); string(kv.Value) != "old" {
				t.Fatalf("a = %s", kvStr(kv))
			}
			// Every case writes, so it could only have gone through Apply.
			if IsTxnReadOnly(tt.req) {
				t.Fatal("writing txn reported read-only")
			}
		})
	}

	// A bad op in the branch not taken is never checked.
	h := newHarness(t)
	h.put("a", "old")
	resp := h.mustTxn(&pb.TxnRequest{
		Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VALUE, pb.Compare_EQUAL, "old")},
		Success: []*pb.RequestOp{opPut("a", "new")},
		Failure: []*pb.RequestOp{opPutReq(&pb.PutRequest{Key: []byte("c"), Lease: 999}), opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 100})},
	})
	if !resp.Succeeded || string(h.get("a").Value) != "new" {
		t.Fatalf("txn with a bad untaken branch: %v", resp)
	}

	// TxnReadOnly reports range revision errors too.
	if _, err := h.s.TxnReadOnly(&pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: 100})}}); err != ErrFutureRev {
		t.Fatalf("TxnReadOnly future range: %v, want %v", err, ErrFutureRev)
	}
}

func TestIsTxnReadOnly(t *testing.T) {
	deep := func(op *pb.RequestOp) *pb.TxnRequest {
		return &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", ""), opTxn(&pb.TxnRequest{Failure: []*pb.RequestOp{opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{op}})}})}}
	}
	tests := []struct {
		name string
		req  *pb.TxnRequest
		want bool
	}{
		{"empty", &pb.TxnRequest{}, true},
		{"compares only", &pb.TxnRequest{Compare: []*pb.Compare{cmpOf("a", "", pb.Compare_VERSION, pb.Compare_EQUAL, int64(0))}}, true},
		{"ranges", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", "")}, Failure: []*pb.RequestOp{opRange("b", "c")}}, true},
		{"put in success", &pb.TxnRequest{Success: []*pb.RequestOp{opRange("a", ""), opPut("a", "1")}}, false},
		{"put in failure", &pb.TxnRequest{Failure: []*pb.RequestOp{opPut("a", "1")}}, false},
		{"delete in failure", &pb.TxnRequest{Failure: []*pb.RequestOp{opDel("a", "")}}, false},
		{"deep range", deep(opRange("x", "")), true},
		{"deep put", deep(opPut("x", "1")), false},
		{"deep delete", deep(opDel("x", "")), false},
		{"empty op", &pb.TxnRequest{Success: []*pb.RequestOp{{}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTxnReadOnly(tt.req); got != tt.want {
				t.Fatalf("IsTxnReadOnly = %v, want %v", got, tt.want)
			}
		})
	}
}

// etcd's checkRange rejects a txn range whose revision is below the compact
// revision (req.Revision < rv.FirstRev(), with 0 meaning "current"), so a
// negative revision fails with ErrCompacted once the store has been
// compacted. A plain Range treats it as the current revision.
func TestTxnRangeNegativeRevisionAfterCompaction(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1") // 2
	h.put("a", "2") // 3
	h.mustCompact(3)
	if resp := h.rng(&pb.RangeRequest{Key: []byte("a"), Revision: -1}); len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Fatalf("plain range at -1: %s", kvsStr(resp.Kvs))
	}
	req := &pb.TxnRequest{Success: []*pb.RequestOp{opRangeReq(&pb.RangeRequest{Key: []byte("a"), Revision: -1})}}
	if _, err := h.s.TxnReadOnly(req); err != ErrCompacted {
		t.Errorf("TxnReadOnly with range at -1: err = %v, want %v", err, ErrCompacted)
	}
	req.Success = append(req.Success, opPut("b", "1"))
	res := h.txn(req)
	wantErr(t, "txn with range at -1", res.Err, ErrCompacted)
	h.wantRev(3)
}
