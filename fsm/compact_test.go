package fsm

import (
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// compactFixture:
//
//	2 put a=a1   3 put a=a2   4 put b=b1   5 del b   6 put a=a3   7 put c=c1
func compactFixture(t *testing.T) *harness {
	h := newHarness(t)
	h.put("a", "a1")
	h.put("a", "a2")
	h.put("b", "b1")
	h.del("b", "")
	h.put("a", "a3")
	h.put("c", "c1")
	return h
}

// retained lists the mod revisions of the versions kept for key, nil if
// the store keeps no record of it.
func retained(s *Store, key string) []int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	kr, ok := s.keys.Get(&keyRecord{key: []byte(key)})
	if !ok {
		return nil
	}
	var revs []int64
	for _, v := range kr.versions {
		revs = append(revs, v.kv.ModRevision)
	}
	return revs
}

func historyRevs(s *Store) []int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var revs []int64
	for _, v := range s.history {
		revs = append(revs, v.kv.ModRevision)
	}
	return revs
}

func TestCompactDropsHistory(t *testing.T) {
	h := compactFixture(t)
	ch, _ := h.s.Changed()
	res := h.compact(4)
	if res.Err != nil || res.Compaction == nil || res.Compaction.Header.Revision != 7 {
		t.Fatalf("compact(4) = %+v", res)
	}
	select {
	case <-ch:
	default:
		t.Fatal("compaction did not fire Changed")
	}
	if rev, compact := h.s.Revs(); rev != 7 || compact != 4 {
		t.Fatalf("Revs() = %d, %d; want 7, 4", rev, compact)
	}
	for _, rev := range []int64{1, 2, 3} {
		if _, err := h.s.Range(&pb.RangeRequest{Key: []byte("a"), Revision: rev}); err != ErrCompacted {
			t.Fatalf("range at %d: %v, want ErrCompacted", rev, err)
		}
	}
	// At the compact revision every key keeps the value it had then.
	got := h.all(4)
	if kvsStr(got) != kvsStr([]*mvccpb.KeyValue{
		{Key: []byte("a"), Value: []byte("a2"), CreateRevision: 2, ModRevision: 3, Version: 2},
		{Key: []byte("b"), Value: []byte("b1"), CreateRevision: 4, ModRevision: 4, Version: 1},
	}) {
		t.Fatalf("range at 4 = %s", kvsStr(got))
	}
	if n := len(h.all(5)); n != 1 {
		t.Fatalf("range at 5: %d keys, want 1", n)
	}
	// a1 (rev 2) can no longer be read and is gone; a2 stays for reads at 4.
	if got := retained(h.s, "a"); !slices.Equal(got, []int64{3, 6}) {
		t.Fatalf("versions of a: %v, want [3 6]", got)
	}
	if got := historyRevs(h.s); len(got) == 0 || got[0] < 4 {
		t.Fatalf("history after compact(4) starts at %v", got)
	}
	// Compaction does not change the current state.
	if got := keysOf(h.all(0)); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("current keys %q", got)
	}
	if kv := h.get("a"); kv.Version != 3 || kv.CreateRevision != 2 {
		t.Fatalf("a after compaction = %s", kvStr(kv))
	}
	// Updating after compaction keeps counting versions.
	h.put("a", "a4")
	if kv := h.get("a"); kv.Version != 4 || kv.CreateRevision != 2 {
		t.Fatalf("a after compaction and put = %s", kvStr(kv))
	}
}

func TestCompactErrors(t *testing.T) {
	h := compactFixture(t) // current revision 7
	steps := []struct {
		rev         int64
		err         error
		wantCompact int64
	}{
		{8, ErrFutureRev, -1}, // never compacted: -1, as etcd
		{100, ErrFutureRev, -1},
		{3, nil, 3},
		{3, ErrCompacted, 3},
		{2, ErrCompacted, 3},
		{0, ErrCompacted, 3},
		{-1, ErrCompacted, 3},
		{5, nil, 5},
		{4, ErrCompacted, 5},
		{8, ErrFutureRev, 5},
		{7, nil, 7}, // exactly the current revision
		{7, ErrCompacted, 7},
	}
	for i, st := range steps {
		before := h.s.Digest()
		res := h.compact(st.rev)
		if st.err != nil {
			wantErr(t, "compact", res.Err, st.err)
			if res.Compaction != nil {
				t.Fatalf("step %d: failed compaction returned a response", i)
			}
			if h.s.Digest() != before {
				t.Fatalf("step %d: failed compaction changed the store", i)
			}
		} else if res.Err != nil {
			t.Fatalf("step %d: compact(%d): %v", i, st.rev, res.Err)
		}
		if rev, compact := h.s.Revs(); rev != 7 || compact != st.wantCompact {
			t.Fatalf("step %d: Revs() = %d, %d; want 7, %d", i, rev, compact, st.wantCompact)
		}
	}
}

func TestCompactDeletedKeysVanish(t *testing.T) {
	h := newHarness(t)
	h.put("gone", "1")  // 2
	h.put("gone", "2")  // 3
	h.put("stay", "1")  // 4
	h.del("gone", "")   // 5
	h.put("other", "1") // 6
	h.del("late", "")   // nothing: still 6
	h.put("late", "1")  // 7
	h.del("late", "")   // 8
	h.mustCompact(6)

	// "gone" was deleted before the compact revision: nothing of it is left.
	if got := retained(h.s, "gone"); got != nil {
		t.Fatalf("versions of deleted key retained: %v", got)
	}
	// "late" was deleted after it: its history stays readable.
	if got := retained(h.s, "late"); !slices.Equal(got, []int64{7, 8}) {
		t.Fatalf("versions of late: %v", got)
	}
	if got := keysOf(h.all(6)); !slices.Equal(got, []string{"other", "stay"}) {
		t.Fatalf("range at compact revision: %q", got)
	}
	if got := keysOf(h.all(7)); !slices.Equal(got, []string{"late", "other", "stay"}) {
		t.Fatalf("range at 7: %q", got)
	}
	for _, v := range h.s.Snapshot().versions {
		if string(v.kv.Key) == "gone" {
			t.Fatalf("snapshot still holds %s", evStr(v.ev))
		}
	}
	// A watch from the compact revision sees nothing of "gone".
	ws := h.s.NewWatchStream()
	if _, _, err := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 6}); err != nil {
		t.Fatal(err)
	}
	evs, _ := collectAll(t, ws)
	want := []string{
		"PUT " + kvStr(&mvccpb.KeyValue{Key: []byte("other"), Value: []byte("1"), CreateRevision: 6, ModRevision: 6, Version: 1}),
		"PUT " + kvStr(&mvccpb.KeyValue{Key: []byte("late"), Value: []byte("1"), CreateRevision: 7, ModRevision: 7, Version: 1}),
		"DELETE " + kvStr(&mvccpb.KeyValue{Key: []byte("late"), ModRevision: 8}),
	}
	if got := evsStr(evs[0]); !slices.Equal(got, want) {
		t.Fatalf("events from compact revision:\n got %q\nwant %q", got, want)
	}
	// Compacting past the later deletion drops "late" as well.
	h.mustCompact(8)
	if got := retained(h.s, "late"); len(got) > 1 || (len(got) == 1 && got[0] != 8) {
		t.Fatalf("versions of late after compact(8): %v", got)
	}
	h.put("x", "1") // 9
	h.mustCompact(9)
	if got := retained(h.s, "late"); got != nil {
		t.Fatalf("versions of late after compact(9): %v", got)
	}
	if h.s.KeyCount() != 3 {
		t.Fatalf("KeyCount %d, want 3", h.s.KeyCount())
	}
}

func TestWatchFromCompactedRevision(t *testing.T) {
	h := compactFixture(t)
	ws := h.s.NewWatchStream()
	// A lagging watcher created before the compaction...
	lagging, _, err := ws.Watch(WatchRequest{Key: []byte("a"), StartRev: 2})
	if err != nil {
		t.Fatal(err)
	}
	h.mustCompact(5)
	// ...and one created after it, starting below the compact revision.
	late, _, err := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 4})
	if err != nil {
		t.Fatal(err)
	}
	// One that starts exactly at the compact revision is fine.
	ok, _, err := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 5})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ws.Ready():
	default:
		t.Fatal("Ready blocks with compacted watchers pending")
	}
	msgs, rev := ws.Collect()
	if rev != 7 {
		t.Fatalf("Collect read up to %d, want 7", rev)
	}
	compacted := map[int64]bool{}
	for _, m := range msgs {
		if m.CompactRevision != 0 {
			if m.CompactRevision != 5 || len(m.Events) != 0 {
				t.Fatalf("compacted message %+v", m)
			}
			compacted[m.WatchID] = true
		} else if m.WatchID != ok {
			t.Fatalf("unexpected message %+v", m)
		}
	}
	if !compacted[lagging] || !compacted[late] || compacted[ok] || len(compacted) != 2 {
		t.Fatalf("compacted watchers %v, want %d and %d", compacted, lagging, late)
	}
	if ws.Len() != 1 {
		t.Fatalf("%d watchers left, want 1 (compacted ones are removed)", ws.Len())
	}
	if _, found := ws.Request(lagging); found {
		t.Fatal("compacted watcher still present")
	}
	h.put("a", "again")
	msgs, _ = ws.Collect()
	if len(msgs) != 1 || msgs[0].WatchID != ok || msgs[0].CompactRevision != 0 {
		t.Fatalf("after compaction: %+v", msgs)
	}
}

func TestWatchAtCompactRevisionReplaysIt(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")                                                                                        // 2
	h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("b", "1"), opPut("a", "2"), opPut("c", "1")}}) // 3
	h.put("a", "3")                                                                                        // 4
	h.mustCompact(3)

	ws := h.s.NewWatchStream()
	id, _, err := ws.Watch(WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 3, PrevKV: true})
	if err != nil {
		t.Fatal(err)
	}
	evs, msgs := collectAll(t, ws)
	want := []string{
		"PUT " + kvStr(&mvccpb.KeyValue{Key: []byte("b"), Value: []byte("1"), CreateRevision: 3, ModRevision: 3, Version: 1}),
		// etcd fills prev_kv by reading at mod_revision-1; at 2 < the
		// compact revision that read fails, so the event has none.
		"PUT " + kvStr(&mvccpb.KeyValue{Key: []byte("a"), Value: []byte("2"), CreateRevision: 2, ModRevision: 3, Version: 2}),
		"PUT " + kvStr(&mvccpb.KeyValue{Key: []byte("c"), Value: []byte("1"), CreateRevision: 3, ModRevision: 3, Version: 1}),
		"PUT " + kvStr(&mvccpb.KeyValue{Key: []byte("a"), Value: []byte("3"), CreateRevision: 2, ModRevision: 4, Version: 3}) +
			" prev{" + kvStr(&mvccpb.KeyValue{Key: []byte("a"), Value: []byte("2"), CreateRevision: 2, ModRevision: 3, Version: 2}) + "}",
	}
	if got := evsStr(evs[id]); !slices.Equal(got, want) {
		t.Fatalf("events:\n got %q\nwant %q", got, want)
	}
	for _, m := range msgs {
		if m.CompactRevision != 0 {
			t.Fatalf("watch at the compact revision reported compaction: %+v", m)
		}
	}

	// A deletion at exactly the compact revision is kept for such watches
	// (the store's documented choice; etcd physically removes that
	// tombstone in its background compaction).
	h.del("b", "") // 5
	h.mustCompact(5)
	ws2 := h.s.NewWatchStream()
	id2, _, err := ws2.Watch(WatchRequest{Key: []byte("b"), StartRev: 5})
	if err != nil {
		t.Fatal(err)
	}
	evs2, _ := collectAll(t, ws2)
	if got := evsStr(evs2[id2]); !slices.Equal(got, []string{"DELETE " + kvStr(&mvccpb.KeyValue{Key: []byte("b"), ModRevision: 5})}) {
		t.Fatalf("events at compact revision 5: %q", got)
	}
	if len(h.all(5)) != 2 {
		t.Fatalf("range at 5 = %s", kvsStr(h.all(5)))
	}
}

// A fresh etcd store has compactMainRev -1, so compacting at revision 0
// succeeds (updateCompactRev refuses only rev <= compactMainRev); a second
// compaction at 0 then fails with ErrCompacted.
func TestCompactZeroOnFreshStore(t *testing.T) {
	h := newHarness(t)
	h.put("a", "1")
	res := h.compact(0)
	if res.Err != nil || res.Compaction == nil || res.Compaction.Header.Revision != 2 {
		t.Fatalf("compact(0) on a never-compacted store = %+v, want success at revision 2", res)
	}
	wantErr(t, "second compact(0)", h.compact(0).Err, ErrCompacted)
	if got := keysOf(h.all(1)); len(got) != 0 {
		t.Fatalf("range at 1 after compact(0): %q", got)
	}
}

// A negative start revision is cancelled with the compact revision once
// anything was compacted, as etcd does (etcdctl watch --rev -1); before the
// first compaction it watches from the next revision, as start 0 does.
func TestWatchNegativeStartRevision(t *testing.T) {
	for _, tc := range []struct {
		name        string
		compact     int64 // 0: none
		start       int64
		wantCompact int64
	}{
		{"no compaction, -1", 0, -1, 0},
		{"no compaction, -100", 0, -100, 0},
		{"compacted at 1, -1", 1, -1, 1},
		{"compacted at 3, -5", 3, -5, 3},
		{"compacted at 3, 0", 3, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.put("a", "1") // 2
			h.put("a", "2") // 3
			if tc.compact > 0 {
				h.mustCompact(tc.compact)
			}
			ws := h.s.NewWatchStream()
			id, created, err := ws.Watch(WatchRequest{Key: []byte("a"), StartRev: tc.start})
			if err != nil || created != 3 {
				t.Fatalf("Watch: created %d, %v", created, err)
			}
			msgs, _ := ws.Collect()
			if tc.wantCompact != 0 {
				if len(msgs) != 1 || msgs[0].WatchID != id || msgs[0].CompactRevision != tc.wantCompact || len(msgs[0].Events) != 0 {
					t.Fatalf("messages %+v, want one cancel with compact revision %d", msgs, tc.wantCompact)
				}
				if ws.Len() != 0 {
					t.Fatalf("%d watchers left, want 0", ws.Len())
				}
				return
			}
			if len(msgs) != 0 {
				t.Fatalf("messages %+v, want none before a new revision", msgs)
			}
			h.put("a", "3") // 4
			msgs, _ = ws.Collect()
			if len(msgs) != 1 || len(msgs[0].Events) != 1 || msgs[0].Events[0].Kv.ModRevision != 4 {
				t.Fatalf("messages %+v, want the put at 4", msgs)
			}
		})
	}
}
