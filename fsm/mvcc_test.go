package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func TestNewStoreStartsAtRevisionOne(t *testing.T) {
	h := newHarness(t)
	h.wantRev(1)
	if rev, compact := h.s.Revs(); rev != 1 || compact != -1 {
		t.Fatalf("Revs() = %d, %d; want 1, -1 (never compacted)", rev, compact)
	}
	if got := h.s.AppliedIndex(); got != 0 {
		t.Fatalf("AppliedIndex() = %d, want 0", got)
	}
	if n := len(h.all(0)); n != 0 || h.s.KeyCount() != 0 {
		t.Fatalf("fresh store holds %d keys (KeyCount %d)", n, h.s.KeyCount())
	}
	if _, err := New(Config{MinLeaseTTL: 0}); err == nil {
		t.Fatal("New accepted MinLeaseTTL 0")
	}
}

func TestPutRevisionsAndVersions(t *testing.T) {
	h := newHarness(t)
	steps := []struct {
		op      string // "put" or "del"
		key     string
		val     string
		wantRev int64 // header revision
		// expected state of key afterwards (nil when deleted)
		want *mvccpb.KeyValue
	}{
		{"put", "a", "1", 2, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1}},
		{"put", "a", "2", 3, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("2"), CreateRevision: 2, ModRevision: 3, Version: 2}},
		{"put", "b", "x", 4, &mvccpb.KeyValue{Key: []byte("b"), Value: []byte("x"), CreateRevision: 4, ModRevision: 4, Version: 1}},
		{"put", "a", "3", 5, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 5, Version: 3}},
		{"del", "a", "", 6, nil},
		{"put", "a", "4", 7, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("4"), CreateRevision: 7, ModRevision: 7, Version: 1}},
		{"put", "a", "5", 8, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("5"), CreateRevision: 7, ModRevision: 8, Version: 2}},
		{"put", "b", "y", 9, &mvccpb.KeyValue{Key: []byte("b"), Value: []byte("y"), CreateRevision: 4, ModRevision: 9, Version: 2}},
	}
	for i, st := range steps {
		var hdr int64
		if st.op == "put" {
			hdr = h.put(st.key, st.val).Header.Revision
		} else {
			resp := h.del(st.key, "")
			if resp.Deleted != 1 {
				t.Fatalf("step %d: deleted %d, want 1", i, resp.Deleted)
			}
			hdr = resp.Header.Revision
		}
		if hdr != st.wantRev {
			t.Fatalf("step %d (%s %s): header revision %d, want %d", i, st.op, st.key, hdr, st.wantRev)
		}
		h.wantRev(st.wantRev)
		if got, want := kvStr(h.get(st.key)), kvStr(st.want); got != want {
			t.Fatalf("step %d (%s %s): got %s, want %s", i, st.op, st.key, got, want)
		}
	}
}

// rangeFixture holds a, a/1, a/2, a0, b, c at revisions 2..7.
func rangeFixture(t *testing.T) *harness {
	h := newHarness(t)
	for _, k := range []string{"a", "a/1", "a/2", "a0", "b", "c"} {
		h.put(k, "v-"+k)
	}
	return h
}

func TestRangeKeyRanges(t *testing.T) {
	h := rangeFixture(t)
	tests := []struct {
		name     string
		key, end string
		want     []string
	}{
		{"single key", "a", "", []string{"a"}},
		{"single missing key", "a/", "", []string{}},
		{"prefix", "a/", "a0", []string{"a/1", "a/2"}},
		{"half-open range", "a", "b", []string{"a", "a/1", "a/2", "a0"}},
		{"end excluded", "a0", "c", []string{"a0", "b"}},
		{"from key", "b", "\x00", []string{"b", "c"}},
		{"from key between keys", "a00", "\x00", []string{"b", "c"}},
		{"everything", "\x00", "\x00", []string{"a", "a/1", "a/2", "a0", "b", "c"}},
		{"key above end", "c", "a", []string{}},
		{"key equal end", "b", "b", []string{}},
		{"range past last key", "d", "\x00", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.rng(&pb.RangeRequest{Key: []byte(tt.key), RangeEnd: bytesOrNil(tt.end)})
			if got := keysOf(resp.Kvs); !slices.Equal(got, tt.want) {
				t.Fatalf("keys = %q, want %q", got, tt.want)
			}
			if resp.Count != int64(len(tt.want)) || resp.More {
				t.Fatalf("count %d more %v, want %d false", resp.Count, resp.More, len(tt.want))
			}
			for _, kv := range resp.Kvs {
				if string(kv.Value) != "v-"+string(kv.Key) {
					t.Fatalf("value of %q = %q", kv.Key, kv.Value)
				}
			}
		})
	}
}

func TestRangeLimitCountOnlyKeysOnly(t *testing.T) {
	h := rangeFixture(t)
	leaseID := int64(42)
	h.mustGrant(leaseID, 10)
	h.putLease("a/2", "leased", leaseID) // rev 8
	all := func(r *pb.RangeRequest) *pb.RangeRequest {
		r.Key, r.RangeEnd = []byte("a"), []byte("b")
		return r
	}
	tests := []struct {
		name      string
		req       *pb.RangeRequest
		wantKeys  []string
		wantCount int64
		wantMore  bool
	}{
		{"no limit", all(&pb.RangeRequest{}), []string{"a", "a/1", "a/2", "a0"}, 4, false},
		{"limit 1", all(&pb.RangeRequest{Limit: 1}), []string{"a"}, 4, true},
		{"limit 3", all(&pb.RangeRequest{Limit: 3}), []string{"a", "a/1", "a/2"}, 4, true},
		{"limit equal to total", all(&pb.RangeRequest{Limit: 4}), []string{"a", "a/1", "a/2", "a0"}, 4, false},
		{"limit above total", all(&pb.RangeRequest{Limit: 100}), []string{"a", "a/1", "a/2", "a0"}, 4, false},
		{"count only", all(&pb.RangeRequest{CountOnly: true}), []string{}, 4, false},
		{"count only with limit", all(&pb.RangeRequest{CountOnly: true, Limit: 1}), []string{}, 4, false},
		{"keys only with limit", all(&pb.RangeRequest{KeysOnly: true, Limit: 2}), []string{"a", "a/1"}, 4, true},
		{"count only missing", &pb.RangeRequest{Key: []byte("zz"), CountOnly: true}, []string{}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.rng(tt.req)
			if got := keysOf(resp.Kvs); !slices.Equal(got, tt.wantKeys) {
				t.Fatalf("keys = %q, want %q", got, tt.wantKeys)
			}
			if resp.Count != tt.wantCount || resp.More != tt.wantMore {
				t.Fatalf("count %d more %v, want %d %v", resp.Count, resp.More, tt.wantCount, tt.wantMore)
			}
		})
	}

	t.Run("keys only keeps every other field", func(t *testing.T) {
		full := h.rng(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b")}).Kvs
		ko := h.rng(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), KeysOnly: true}).Kvs
		if len(full) != len(ko) {
			t.Fatalf("%d kvs with keys_only, %d without", len(ko), len(full))
		}
		for i := range full {
			if ko[i].Value != nil {
				t.Fatalf("keys_only returned value %q for %q", ko[i].Value, ko[i].Key)
			}
			want := *full[i]
			want.Value = nil
			if kvStr(ko[i]) != kvStr(&want) {
				t.Fatalf("keys_only kv %s, want %s", kvStr(ko[i]), kvStr(&want))
			}
		}
		if full[2].Lease != leaseID || ko[2].Lease != leaseID {
			t.Fatalf("lease of a/2: full %d keys-only %d, want %d", full[2].Lease, ko[2].Lease, leaseID)
		}
		// keys_only must not have stripped the stored value.
		if got := h.get("a/2"); string(got.Value) != "leased" {
			t.Fatalf("after keys_only, a/2 = %s", kvStr(got))
		}
	})
}

// sortFixture builds four keys whose key, create, mod, version and value
// orders all differ:
//
//	key  create  mod  version  value
//	a    3       11   2        x2
//	b    5       10   4        x0
//	c    2       9    3        x3
//	d    4       4    1        x1
func sortFixture(t *testing.T) *harness {
	h := newHarness(t)
	for _, p := range [][2]string{
		{"c", "c1"}, {"a", "a1"}, {"d", "x1"}, {"b", "b1"}, // revs 2-5
		{"c", "c2"}, {"b", "b2"}, {"b", "b3"}, {"c", "x3"}, {"b", "x0"}, {"a", "x2"}, // revs 6-11
	} {
		h.put(p[0], p[1])
	}
	want := []string{
		kvStr(&mvccpb.KeyValue{Key: []byte("a"), Value: []byte("x2"), CreateRevision: 3, ModRevision: 11, Version: 2}),
		kvStr(&mvccpb.KeyValue{Key: []byte("b"), Value: []byte("x0"), CreateRevision: 5, ModRevision: 10, Version: 4}),
		kvStr(&mvccpb.KeyValue{Key: []byte("c"), Value: []byte("x3"), CreateRevision: 2, ModRevision: 9, Version: 3}),
		kvStr(&mvccpb.KeyValue{Key: []byte("d"), Value: []byte("x1"), CreateRevision: 4, ModRevision: 4, Version: 1}),
	}
	for i, kv := range h.all(0) {
		if kvStr(kv) != want[i] {
			t.Fatalf("fixture kv %d = %s, want %s", i, kvStr(kv), want[i])
		}
	}
	return h
}

func TestRangeSort(t *testing.T) {
	h := sortFixture(t)
	asc := map[pb.RangeRequest_SortTarget][]string{
		pb.RangeRequest_KEY:     {"a", "b", "c", "d"},
		pb.RangeRequest_CREATE:  {"c", "a", "d", "b"},
		pb.RangeRequest_MOD:     {"d", "c", "b", "a"},
		pb.RangeRequest_VERSION: {"d", "a", "c", "b"},
		pb.RangeRequest_VALUE:   {"b", "d", "a", "c"},
	}
	for _, target := range []pb.RangeRequest_SortTarget{pb.RangeRequest_KEY, pb.RangeRequest_CREATE, pb.RangeRequest_MOD, pb.RangeRequest_VERSION, pb.RangeRequest_VALUE} {
		for _, order := range []pb.RangeRequest_SortOrder{pb.RangeRequest_NONE, pb.RangeRequest_ASCEND, pb.RangeRequest_DESCEND} {
			t.Run(target.String()+"/"+order.String(), func(t *testing.T) {
				want := slices.Clone(asc[target])
				if order == pb.RangeRequest_DESCEND {
					slices.Reverse(want)
				}
				// NONE: key order for KEY, ascending for every other target.
				resp := h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: target, SortOrder: order})
				if got := keysOf(resp.Kvs); !slices.Equal(got, want) {
					t.Fatalf("keys = %q, want %q", got, want)
				}
				if resp.Count != 4 || resp.More {
					t.Fatalf("count %d more %v", resp.Count, resp.More)
				}
			})
		}
	}
}

func TestRangeSortWithLimit(t *testing.T) {
	h := sortFixture(t)
	tests := []struct {
		name   string
		target pb.RangeRequest_SortTarget
		order  pb.RangeRequest_SortOrder
		limit  int64
		want   []string
	}{
		// An explicit order sorts every match, then truncates.
		{"mod desc", pb.RangeRequest_MOD, pb.RangeRequest_DESCEND, 2, []string{"a", "b"}},
		{"create asc", pb.RangeRequest_CREATE, pb.RangeRequest_ASCEND, 1, []string{"c"}},
		{"key desc", pb.RangeRequest_KEY, pb.RangeRequest_DESCEND, 3, []string{"d", "c", "b"}},
		// etcd: with order NONE it fetches limit+1 keys in key order (a, b,
		// c), sorts those ascending by the target and truncates.
		{"version none", pb.RangeRequest_VERSION, pb.RangeRequest_NONE, 2, []string{"a", "c"}},
		{"mod none", pb.RangeRequest_MOD, pb.RangeRequest_NONE, 2, []string{"c", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortTarget: tt.target, SortOrder: tt.order, Limit: tt.limit})
			if got := keysOf(resp.Kvs); !slices.Equal(got, tt.want) {
				t.Fatalf("keys = %q, want %q", got, tt.want)
			}
			if resp.Count != 4 || !resp.More {
				t.Fatalf("count %d more %v, want 4 true", resp.Count, resp.More)
			}
		})
	}
}

func TestRangeRevisionFilters(t *testing.T) {
	h := sortFixture(t)
	tests := []struct {
		name     string
		req      pb.RangeRequest
		want     []string
		wantMore bool
	}{
		{"min mod", pb.RangeRequest{MinModRevision: 9}, []string{"a", "b", "c"}, false},
		{"max mod", pb.RangeRequest{MaxModRevision: 9}, []string{"c", "d"}, false},
		{"min create", pb.RangeRequest{MinCreateRevision: 4}, []string{"b", "d"}, false},
		{"max create", pb.RangeRequest{MaxCreateRevision: 3}, []string{"a", "c"}, false},
		{"mod window", pb.RangeRequest{MinModRevision: 9, MaxModRevision: 10}, []string{"b", "c"}, false},
		{"combined", pb.RangeRequest{MinModRevision: 5, MaxCreateRevision: 3}, []string{"a", "c"}, false},
		{"matches nothing", pb.RangeRequest{MinCreateRevision: 6}, []string{}, false},
		{"filter then limit", pb.RangeRequest{MinModRevision: 9, Limit: 2}, []string{"a", "b"}, true},
		{"filter then limit exact", pb.RangeRequest{MinModRevision: 9, Limit: 3}, []string{"a", "b", "c"}, false},
		{"filter, sort, limit", pb.RangeRequest{MinModRevision: 9, SortTarget: pb.RangeRequest_MOD, Limit: 2}, []string{"c", "b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			req.Key, req.RangeEnd = []byte{0}, []byte{0}
			resp := h.rng(&req)
			if got := keysOf(resp.Kvs); !slices.Equal(got, tt.want) {
				t.Fatalf("keys = %q, want %q", got, tt.want)
			}
			// etcd counts before filtering.
			if resp.Count != 4 || resp.More != tt.wantMore {
				t.Fatalf("count %d more %v, want 4 %v", resp.Count, resp.More, tt.wantMore)
			}
		})
	}
}

func TestRangeHistorical(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1") // 2
	h.put("a", "2") // 3
	h.put("b", "1") // 4
	h.del("a", "")  // 5
	h.put("a", "3") // 6
	kv := func(k, v string, c, m, ver int64) string {
		return kvStr(&mvccpb.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: c, ModRevision: m, Version: ver})
	}
	tests := []struct {
		rev  int64
		want []string
	}{
		{1, nil},
		{2, []string{kv("a", "1", 2, 2, 1)}},
		{3, []string{kv("a", "2", 2, 3, 2)}},
		{4, []string{kv("a", "2", 2, 3, 2), kv("b", "1", 4, 4, 1)}},
		{5, []string{kv("b", "1", 4, 4, 1)}},
		{6, []string{kv("a", "3", 6, 6, 1), kv("b", "1", 4, 4, 1)}},
		{0, []string{kv("a", "3", 6, 6, 1), kv("b", "1", 4, 4, 1)}},
	}
	for _, tt := range tests {
		resp := h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: tt.rev})
		var got []string
		for _, kv := range resp.Kvs {
			got = append(got, kvStr(kv))
		}
		if !slices.Equal(got, tt.want) || resp.Count != int64(len(tt.want)) {
			t.Errorf("rev %d: %q (count %d), want %q", tt.rev, got, resp.Count, tt.want)
		}
		// Single-key reads of the deleted key at history.
		single := h.rng(&pb.RangeRequest{Key: []byte("a"), Revision: tt.rev})
		wantA := 0
		for _, w := range tt.want {
			if w[:3] == `"a"` {
				wantA = 1
			}
		}
		if len(single.Kvs) != wantA {
			t.Errorf("rev %d: single-key read of a = %s", tt.rev, kvsStr(single.Kvs))
		}
	}
}

func TestRangeRevisionErrors(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 6; i++ {
		h.put("k", string(rune('a'+i))) // revs 2..7
	}
	h.mustCompact(4)
	tests := []struct {
		rev     int64
		wantErr error
		wantVal string
	}{
		{8, ErrFutureRev, ""},
		{100, ErrFutureRev, ""},
		{1, ErrCompacted, ""},
		{3, ErrCompacted, ""},
		{4, nil, "c"}, // exactly the compact revision
		{5, nil, "d"},
		{7, nil, "f"},
		{0, nil, "f"},
	}
	for _, tt := range tests {
		resp, err := h.s.Range(&pb.RangeRequest{Key: []byte("k"), Revision: tt.rev})
		if tt.wantErr != nil {
			wantErr(t, fmt.Sprintf("range at %d", tt.rev), err, tt.wantErr)
			continue
		}
		if err != nil {
			t.Fatalf("rev %d: %v", tt.rev, err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != tt.wantVal || resp.Header.Revision != 7 {
			t.Fatalf("rev %d: %s header %d, want value %q header 7", tt.rev, kvsStr(resp.Kvs), resp.Header.Revision, tt.wantVal)
		}
	}
}

func TestRangeBinaryAndMixedCaseKeysSortBytewise(t *testing.T) {
	h := newHarness(t)
	var keys []string
	for b := 0; b < 256; b++ {
		keys = append(keys, string([]byte{byte(b)}))
	}
	keys = append(keys, "Route1", "route1", "ROUTE2", "route0", "rOute", "a\x00", "a\xff", "\xff\xff", "\x00\x00", "é", "zz")
	shuffled := slices.Clone(keys)
	rand.New(rand.NewPCG(7, 7)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, k := range shuffled {
		h.put(k, "v")
	}
	want := slices.Clone(keys)
	slices.SortFunc(want, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })

	got := keysOf(h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}).Kvs)
	if !slices.Equal(got, want) {
		t.Fatalf("full range not in byte order:\n got %q\nwant %q", got, want)
	}
	// Spot checks that do not rely on the library sort.
	pos := func(k string) int { return slices.Index(got, k) }
	for _, pair := range [][2]string{{"ROUTE2", "Route1"}, {"Route1", "rOute"}, {"rOute", "route0"}, {"route0", "route1"}, {"\x00", "\x00\x00"}, {"a", "a\x00"}, {"a\x00", "a\xff"}, {"zz", "\x80"}, {"\xff", "\xff\xff"}} {
		if pos(pair[0]) < 0 || pos(pair[1]) < 0 || pos(pair[0]) >= pos(pair[1]) {
			t.Errorf("%q should sort before %q (positions %d, %d)", pair[0], pair[1], pos(pair[0]), pos(pair[1]))
		}
	}
	// Case-sensitive point reads.
	if kv := h.get("route1"); kv == nil || string(kv.Key) != "route1" {
		t.Fatalf("get route1 = %s", kvStr(kv))
	}
	if kv := h.get("ROUTE1"); kv != nil {
		t.Fatalf("get ROUTE1 = %s, want missing", kvStr(kv))
	}
	// Prefix over high bytes: [\xff, \xff\xff) holds only \xff.
	if got := keysOf(h.rng(&pb.RangeRequest{Key: []byte{0xff}, RangeEnd: []byte{0xff, 0xff}}).Kvs); !slices.Equal(got, []string{"\xff"}) {
		t.Fatalf("[\\xff, \\xff\\xff) = %q", got)
	}
	// Prefix "R" is [R, S).
	if got := keysOf(h.rng(&pb.RangeRequest{Key: []byte("R"), RangeEnd: []byte("S")}).Kvs); !slices.Equal(got, []string{"R", "ROUTE2", "Route1"}) {
		t.Fatalf("prefix R = %q", got)
	}
	// Descending key sort is the exact reverse.
	desc := keysOf(h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, SortOrder: pb.RangeRequest_DESCEND}).Kvs)
	slices.Reverse(desc)
	if !slices.Equal(desc, want) {
		t.Fatalf("descending key sort is not the reverse of ascending")
	}
}

func TestDeleteRange(t *testing.T) {
	setup := func(t *testing.T) *harness {
		h := newHarness(t)
		for _, k := range []string{"a", "a/1", "a/2", "b", "c"} {
			h.put(k, "v-"+k) // revs 2..6
		}
		return h
	}
	tests := []struct {
		name        string
		key, end    string
		prevKV      bool
		wantDeleted []string
		wantLeft    []string
	}{
		{"single key", "b", "", false, []string{"b"}, []string{"a", "a/1", "a/2", "c"}},
		{"single key prev", "b", "", true, []string{"b"}, []string{"a", "a/1", "a/2", "c"}},
		{"prefix prev", "a/", "a0", true, []string{"a/1", "a/2"}, []string{"a", "b", "c"}},
		{"from key", "b", "\x00", true, []string{"b", "c"}, []string{"a", "a/1", "a/2"}},
		{"everything", "\x00", "\x00", true, []string{"a", "a/1", "a/2", "b", "c"}, []string{}},
		{"missing key", "zz", "", true, nil, []string{"a", "a/1", "a/2", "b", "c"}},
		{"empty range", "d", "e", true, nil, []string{"a", "a/1", "a/2", "b", "c"}},
		{"key above end", "c", "a", true, nil, []string{"a", "a/1", "a/2", "b", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := setup(t)
			resp := h.delReq(&pb.DeleteRangeRequest{Key: []byte(tt.key), RangeEnd: bytesOrNil(tt.end), PrevKv: tt.prevKV})
			if resp.Deleted != int64(len(tt.wantDeleted)) {
				t.Fatalf("deleted %d, want %d", resp.Deleted, len(tt.wantDeleted))
			}
			wantRev := int64(6)
			if len(tt.wantDeleted) > 0 {
				wantRev = 7 // one revision for the whole range
			}
			if resp.Header.Revision != wantRev {
				t.Fatalf("header revision %d, want %d", resp.Header.Revision, wantRev)
			}
			h.wantRev(wantRev)
			if tt.prevKV {
				if got := keysOf(resp.PrevKvs); !slices.Equal(got, tt.wantDeleted) {
					t.Fatalf("prev_kvs keys %q, want %q", got, tt.wantDeleted)
				}
				for _, kv := range resp.PrevKvs {
					if string(kv.Value) != "v-"+string(kv.Key) || kv.Version != 1 || kv.ModRevision == 0 {
						t.Fatalf("prev kv %s", kvStr(kv))
					}
				}
			} else if len(resp.PrevKvs) != 0 {
				t.Fatalf("prev_kvs without prev_kv: %s", kvsStr(resp.PrevKvs))
			}
			if got := keysOf(h.all(0)); !slices.Equal(got, tt.wantLeft) {
				t.Fatalf("left %q, want %q", got, tt.wantLeft)
			}
			if h.s.KeyCount() != len(tt.wantLeft) {
				t.Fatalf("KeyCount %d, want %d", h.s.KeyCount(), len(tt.wantLeft))
			}
			// The deleted keys remain readable one revision back.
			if len(tt.wantDeleted) > 0 {
				old := h.rng(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: wantRev - 1})
				if old.Count != 5 {
					t.Fatalf("count at rev %d = %d, want 5", wantRev-1, old.Count)
				}
			}
		})
	}
}

func TestDeleteMissingDoesNotSignalChange(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")
	ch, rev := h.s.Changed()
	h.del("nope", "")
	h.del("a0", "\x00")
	select {
	case <-ch:
		t.Fatal("Changed fired for deletes that deleted nothing")
	default:
	}
	h.del("a", "")
	select {
	case <-ch:
	default:
		t.Fatal("Changed did not fire for a delete")
	}
	if h.s.Rev() != rev+1 {
		t.Fatalf("rev %d, want %d", h.s.Rev(), rev+1)
	}
}

func TestPutPrevKV(t *testing.T) {
	h := newHarness(t)
	prevKV := func(key, val string) *mvccpb.KeyValue {
		return h.mustPutReq(&pb.PutRequest{Key: []byte(key), Value: []byte(val), PrevKv: true}).PrevKv
	}
	if pkv := prevKV("k", "1"); pkv != nil {
		t.Fatalf("prev_kv of a new key: %s", kvStr(pkv))
	}
	want := kvStr(&mvccpb.KeyValue{Key: []byte("k"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1})
	if pkv := prevKV("k", "2"); kvStr(pkv) != want {
		t.Fatalf("prev_kv = %s, want %s", kvStr(pkv), want)
	}
	if pkv := h.put("k", "3").PrevKv; pkv != nil {
		t.Fatalf("prev_kv returned without asking: %s", kvStr(pkv))
	}
	h.del("k", "")
	if pkv := prevKV("k", "4"); pkv != nil {
		t.Fatalf("prev_kv of a re-created key: %s", kvStr(pkv))
	}
	if kv := h.get("k"); kv.Version != 1 || kv.CreateRevision != 6 {
		t.Fatalf("re-created key %s", kvStr(kv))
	}
}

func TestPutIgnoreValueAndLease(t *testing.T) {
	h := newHarness(t)
	const lid = 100
	h.mustGrant(lid, 30)

	// Missing key: both flags fail and change nothing.
	for _, p := range []*pb.PutRequest{
		{Key: []byte("k"), IgnoreValue: true},
		{Key: []byte("k"), Value: []byte("v"), IgnoreLease: true},
		{Key: []byte("k"), IgnoreValue: true, IgnoreLease: true},
	} {
		res := h.putReq(p)
		wantErr(t, "put on missing key", res.Err, ErrKeyNotFound)
		if res.Put != nil {
			t.Fatalf("failed put returned a response")
		}
		h.wantRev(1)
		if kv := h.get("k"); kv != nil {
			t.Fatalf("failed put created %s", kvStr(kv))
		}
	}

	steps := []struct {
		name      string
		req       *pb.PutRequest
		wantValue string
		wantLease int64
		wantKeys  int // keys attached to the lease afterwards
	}{
		{"plain put with lease", &pb.PutRequest{Value: []byte("v"), Lease: lid}, "v", lid, 1},
		{"ignore_lease keeps lease", &pb.PutRequest{Value: []byte("w"), IgnoreLease: true}, "w", lid, 1},
		{"ignore_value keeps value", &pb.PutRequest{IgnoreValue: true, Lease: lid}, "w", lid, 1},
		{"ignore_value without lease detaches", &pb.PutRequest{IgnoreValue: true}, "w", 0, 0},
		{"both flags", &pb.PutRequest{IgnoreValue: true, IgnoreLease: true}, "w", 0, 0},
		{"ignore_value reattaches", &pb.PutRequest{IgnoreValue: true, Lease: lid, PrevKv: true}, "w", lid, 1},
	}
	for i, st := range steps {
		st.req.Key = []byte("k")
		resp := h.mustPutReq(st.req)
		kv := h.get("k")
		if string(kv.Value) != st.wantValue || kv.Lease != st.wantLease || kv.Version != int64(i+1) || kv.CreateRevision != 2 {
			t.Fatalf("%s: %s, want value %q lease %d version %d", st.name, kvStr(kv), st.wantValue, st.wantLease, i+1)
		}
		if li, ok := h.s.Lease(lid, true); !ok || len(li.Keys) != st.wantKeys {
			t.Fatalf("%s: lease keys %q, want %d", st.name, li.Keys, st.wantKeys)
		}
		if st.req.PrevKv && (resp.PrevKv == nil || resp.PrevKv.Version != int64(i)) {
			t.Fatalf("%s: prev_kv %s", st.name, kvStr(resp.PrevKv))
		}
	}

	h.del("k", "")
	rev := h.s.Rev()
	res := h.putReq(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true})
	wantErr(t, "ignore_value after delete", res.Err, ErrKeyNotFound)
	h.wantRev(rev)
}

func TestPutUnknownLease(t *testing.T) {
	h := newHarness(t)
	h.put("exists", "old") // 2
	h.mustGrant(5, 10)
	for _, key := range []string{"exists", "new"} {
		res := h.putReq(&pb.PutRequest{Key: []byte(key), Value: []byte("x"), Lease: 999})
		wantErr(t, "put "+key+" with unknown lease", res.Err, ErrLeaseNotFound)
		if res.Put != nil {
			t.Fatalf("failed put returned a response")
		}
		h.wantRev(2)
	}
	if kv := h.get("exists"); kvStr(kv) != kvStr(&mvccpb.KeyValue{Key: []byte("exists"), Value: []byte("old"), CreateRevision: 2, ModRevision: 2, Version: 1}) {
		t.Fatalf("existing key changed: %s", kvStr(kv))
	}
	if kv := h.get("new"); kv != nil {
		t.Fatalf("failed put created %s", kvStr(kv))
	}
	// The failed entries still count as applied.
	if h.s.AppliedIndex() != h.idx {
		t.Fatalf("applied %d, want %d", h.s.AppliedIndex(), h.idx)
	}
	// A known lease works.
	if r := h.putLease("new", "x", 5).Header.Revision; r != 3 {
		t.Fatalf("put with lease at rev %d, want 3", r)
	}
}

func TestKeyCount(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")
	h.put("b", "1")
	h.put("a", "2")
	h.del("b", "")
	h.put("c", "1")
	if n := h.s.KeyCount(); n != 2 {
		t.Fatalf("KeyCount = %d, want 2", n)
	}
}
