package fsm

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestLeaseGrant(t *testing.T) {
	h := newHarness(t) // MinLeaseTTL 2
	steps := []struct {
		name    string
		id, ttl int64
		err     error
		wantTTL int64
	}{
		{"below minimum is raised", 1, 1, nil, 2},
		{"zero ttl is raised", 2, 0, nil, 2},
		{"negative ttl is raised", 3, -5, nil, 2},
		{"minimum", 4, 2, nil, 2},
		{"ordinary", 5, 60, nil, 60},
		{"maximum", 6, MaxLeaseTTL, nil, MaxLeaseTTL},
		{"above maximum", 7, MaxLeaseTTL + 1, ErrLeaseTTLTooLarge, 0},
		{"existing id", 5, 30, ErrLeaseExists, 60},
		{"id zero", 0, 10, ErrLeaseNotFound, 0},
		{"negative id", -9, 10, nil, 10},
	}
	for _, st := range steps {
		res := h.grant(st.id, st.ttl)
		if st.err != nil {
			wantErr(t, st.name, res.Err, st.err)
			if res.LeaseGrant != nil {
				t.Fatalf("%s: failed grant returned a response", st.name)
			}
		} else {
			if res.Err != nil {
				t.Fatalf("%s: %v", st.name, res.Err)
			}
			if g := res.LeaseGrant; g.ID != st.id || g.TTL != st.wantTTL || g.Header.Revision != 1 {
				t.Fatalf("%s: response %v, want id %d ttl %d rev 1", st.name, g, st.id, st.wantTTL)
			}
		}
		li, ok := h.s.Lease(st.id, false)
		if exists := st.wantTTL != 0; ok != exists || (ok && (li.TTL != st.wantTTL || li.ID != st.id)) {
			t.Fatalf("%s: Lease(%d) = %+v, %v; want ttl %d", st.name, st.id, li, ok, st.wantTTL)
		}
		h.wantRev(1) // grants never move the revision
	}
	var ids []int64
	for _, li := range h.s.Leases() {
		ids = append(ids, li.ID)
		if li.Keys != nil {
			t.Fatalf("Leases() lists keys: %+v", li)
		}
	}
	if !slices.Equal(ids, []int64{-9, 1, 2, 3, 4, 5, 6}) {
		t.Fatalf("Leases() ids %v", ids)
	}

	h5 := newHarnessCfg(t, Config{MinLeaseTTL: 5})
	if g := h5.mustGrant(1, 3); g.TTL != 5 {
		t.Fatalf("MinLeaseTTL 5: ttl %d", g.TTL)
	}
	if g := h5.mustGrant(2, 6); g.TTL != 6 {
		t.Fatalf("MinLeaseTTL 5: ttl %d", g.TTL)
	}
}

// etcd's lessor.Grant checks the TTL limit before it looks the ID up, so a
// grant that is both a duplicate and too long fails with
// ErrLeaseTTLTooLarge.
func TestLeaseGrantErrorPrecedence(t *testing.T) {
	h := newHarness(t)
	h.mustGrant(1, 10)
	res := h.grant(1, MaxLeaseTTL+1)
	wantErr(t, "grant of an existing ID with a too-large TTL", res.Err, ErrLeaseTTLTooLarge)
	if li, _ := h.s.Lease(1, false); li.TTL != 10 {
		t.Fatalf("lease 1 ttl %d, want 10", li.TTL)
	}
}

func leaseKeys(t *testing.T, s *Store, id int64) []string {
	t.Helper()
	li, ok := s.Lease(id, true)
	if !ok {
		t.Fatalf("lease %d not found", id)
	}
	keys := []string{}
	for _, k := range li.Keys {
		keys = append(keys, string(k))
	}
	return keys
}

func TestLeaseAttachDetach(t *testing.T) {
	h := newHarness(t)
	h.mustGrant(1, 10)
	h.mustGrant(2, 10)
	steps := []struct {
		name   string
		do     func()
		keys1  []string
		keys2  []string
		leases map[string]int64 // key -> lease of its current version
	}{
		{"attach", func() { h.putLease("b", "1", 1); h.putLease("a", "1", 1); h.putLease("c", "1", 2) },
			[]string{"a", "b"}, []string{"c"}, map[string]int64{"a": 1, "b": 1, "c": 2}},
		{"re-put without lease detaches", func() { h.put("a", "2") },
			[]string{"b"}, []string{"c"}, map[string]int64{"a": 0, "b": 1, "c": 2}},
		{"re-put with another lease moves", func() { h.putLease("b", "2", 2) },
			[]string{}, []string{"b", "c"}, map[string]int64{"a": 0, "b": 2, "c": 2}},
		{"re-put with the same lease keeps", func() { h.putLease("c", "2", 2) },
			[]string{}, []string{"b", "c"}, map[string]int64{"a": 0, "b": 2, "c": 2}},
		{"delete detaches", func() { h.del("c", "") },
			[]string{}, []string{"b"}, map[string]int64{"a": 0, "b": 2}},
		{"re-create without lease", func() { h.put("c", "3") },
			[]string{}, []string{"b"}, map[string]int64{"a": 0, "b": 2, "c": 0}},
		{"attach in a txn", func() {
			h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{
				opPutReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("t"), Lease: 1}),
				opPutReq(&pb.PutRequest{Key: []byte("d"), Value: []byte("t"), Lease: 1}),
			}})
		}, []string{"a", "d"}, []string{"b"}, map[string]int64{"a": 1, "b": 2, "c": 0, "d": 1}},
		{"delete range in a txn detaches", func() {
			h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opDel("a", "c")}})
		}, []string{"d"}, []string{}, map[string]int64{"c": 0, "d": 1}},
	}
	for _, st := range steps {
		st.do()
		if got := leaseKeys(t, h.s, 1); !slices.Equal(got, st.keys1) {
			t.Fatalf("%s: lease 1 keys %q, want %q", st.name, got, st.keys1)
		}
		if got := leaseKeys(t, h.s, 2); !slices.Equal(got, st.keys2) {
			t.Fatalf("%s: lease 2 keys %q, want %q", st.name, got, st.keys2)
		}
		kvs := h.all(0)
		if len(kvs) != len(st.leases) {
			t.Fatalf("%s: keys %s", st.name, kvsStr(kvs))
		}
		for _, kv := range kvs {
			if want, ok := st.leases[string(kv.Key)]; !ok || kv.Lease != want {
				t.Fatalf("%s: %s, want lease %d", st.name, kvStr(kv), want)
			}
		}
	}
}

func TestLeaseRevoke(t *testing.T) {
	h := newHarness(t)
	h.mustGrant(1, 10)
	h.mustGrant(2, 10)
	h.putLease("z", "1", 1) // 2
	h.putLease("a", "1", 1) // 3
	h.put("free", "1")      // 4
	h.putLease("m", "1", 1) // 5
	h.putLease("k", "1", 2) // 6
	h.putLease("a", "2", 1) // 7
	ch, _ := h.s.Changed()

	res := h.revoke(1)
	if res.Err != nil || res.LeaseRevoke == nil || res.LeaseRevoke.Header.Revision != 8 {
		t.Fatalf("revoke(1) = %+v", res)
	}
	h.wantRev(8)
	select {
	case <-ch:
	default:
		t.Fatal("revoke did not fire Changed")
	}
	if _, ok := h.s.Lease(1, true); ok {
		t.Fatal("lease 1 still exists")
	}
	if ls := h.s.Leases(); len(ls) != 1 || ls[0].ID != 2 {
		t.Fatalf("Leases() = %+v", ls)
	}
	if got := keysOf(h.all(0)); !slices.Equal(got, []string{"free", "k"}) {
		t.Fatalf("keys after revoke: %q", got)
	}
	// Every attached key was deleted at the single revision 8, in key order.
	if got := keysOf(h.all(7)); !slices.Equal(got, []string{"a", "free", "k", "m", "z"}) {
		t.Fatalf("keys at 7: %q", got)
	}
	ws := h.s.NewWatchStream()
	id, _, _ := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 8})
	evs, _ := collectAll(t, ws)
	want := []string{
		"DELETE " + kvStr(&mvccpb.KeyValue{Key: []byte("a"), ModRevision: 8}),
		"DELETE " + kvStr(&mvccpb.KeyValue{Key: []byte("m"), ModRevision: 8}),
		"DELETE " + kvStr(&mvccpb.KeyValue{Key: []byte("z"), ModRevision: 8}),
	}
	if got := evsStr(evs[id]); !slices.Equal(got, want) {
		t.Fatalf("revoke events %q, want %q", got, want)
	}

	// Revoking again, or an unknown lease, fails and changes nothing.
	for _, lid := range []int64{1, 99, 0} {
		res := h.revoke(lid)
		wantErr(t, "revoke unknown", res.Err, ErrLeaseNotFound)
		if res.LeaseRevoke != nil {
			t.Fatal("failed revoke returned a response")
		}
		h.wantRev(8)
	}
	// Keys put under lease 1 afterwards are refused.
	res = h.putReq(&pb.PutRequest{Key: []byte("a"), Value: []byte("x"), Lease: 1})
	wantErr(t, "put with revoked lease", res.Err, ErrLeaseNotFound)
	// The ID can be granted again, empty.
	h.mustGrant(1, 10)
	if got := leaseKeys(t, h.s, 1); len(got) != 0 {
		t.Fatalf("re-granted lease has keys %q", got)
	}
}

func TestLeaseRevokeWithoutKeys(t *testing.T) {
	h := newHarness(t)
	h.mustGrant(1, 10)
	h.mustGrant(2, 10)
	h.put("x", "1")         // 2
	h.putLease("y", "1", 2) // 3
	h.put("y", "2")         // 4: detached from lease 2
	ch, _ := h.s.Changed()
	for _, lid := range []int64{1, 2} {
		res := h.revoke(lid)
		if res.Err != nil || res.LeaseRevoke.Header.Revision != 4 {
			t.Fatalf("revoke(%d) = %+v", lid, res)
		}
		h.wantRev(4)
		if _, ok := h.s.Lease(lid, false); ok {
			t.Fatalf("lease %d still exists", lid)
		}
	}
	select {
	case <-ch:
		t.Fatal("revoking leases without keys fired Changed")
	default:
	}
	if got := keysOf(h.all(0)); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("keys %q", got)
	}
}

func TestLeaseKeysSorted(t *testing.T) {
	h := newHarness(t)
	h.mustGrant(3, 10)
	keys := []string{"b", "B", "a", "a/b", "a\x00", "\xff", "\x00", "Zeta", "zeta", "10", "9"}
	shuffled := slices.Clone(keys)
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		h.putLease(k, "v", 3)
	}
	want := slices.Clone(keys)
	slices.SortFunc(want, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })
	if got := leaseKeys(t, h.s, 3); !slices.Equal(got, want) {
		t.Fatalf("Lease keys %q, want %q", got, want)
	}
	li, ok := h.s.Lease(3, false)
	if !ok || li.Keys != nil || li.ID != 3 || li.TTL != 10 {
		t.Fatalf("Lease(3, false) = %+v", li)
	}
	if _, ok := h.s.Lease(4, true); ok {
		t.Fatal("Lease(4) found")
	}
}
