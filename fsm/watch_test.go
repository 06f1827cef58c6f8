package fsm

import (
	"fmt"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

func putEv(key, val string, create, mod, ver int64) string {
	return "PUT " + kvStr(&mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver})
}

func delEv(key string, mod int64) string {
	return "DELETE " + kvStr(&mvccpb.KeyValue{Key: []byte(key), ModRevision: mod})
}

func withPrev(ev, key, val string, create, mod, ver int64) string {
	return ev + " prev{" + kvStr(&mvccpb.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: create, ModRevision: mod, Version: ver}) + "}"
}

// watchFixture:
//
//	2 put a=1   3 put b=1   4 put a=2   5 del a   6 txn{put c=1, del b}   7 put a=3
func watchFixture(t *testing.T) *harness {
	h := newHarness(t)
	h.put("a", "1")
	h.put("b", "1")
	h.put("a", "2")
	h.del("a", "")
	h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("c", "1"), opDel("b", "")}})
	h.put("a", "3")
	return h
}

func mustWatch(t *testing.T, ws *WatchStream, r WatchRequest) int64 {
	t.Helper()
	id, _, err := ws.Watch(r)
	if err != nil {
		t.Fatalf("Watch(%+v): %v", r, err)
	}
	return id
}

func TestWatchReplay(t *testing.T) {
	h := watchFixture(t)
	all := []string{
		putEv("a", "1", 2, 2, 1),
		putEv("b", "1", 3, 3, 1),
		putEv("a", "2", 2, 4, 2),
		delEv("a", 5),
		putEv("c", "1", 6, 6, 1),
		delEv("b", 6),
		putEv("a", "3", 7, 7, 1),
	}
	allPrev := []string{
		all[0],
		all[1],
		withPrev(all[2], "a", "1", 2, 2, 1),
		withPrev(all[3], "a", "2", 2, 4, 2),
		all[4],
		withPrev(all[5], "b", "1", 3, 3, 1),
		all[6], // a re-created key has no previous value
	}
	tests := []struct {
		name string
		req  WatchRequest
		want []string
	}{
		{"everything from 2", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 2}, all},
		{"everything from 1", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 1}, all},
		{"from 5", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 5}, all[3:]},
		{"from current", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 7}, all[6:]},
		{"prev_kv", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 2, PrevKV: true}, allPrev},
		{"single key a", WatchRequest{Key: []byte("a"), StartRev: 2}, []string{all[0], all[2], all[3], all[6]}},
		{"single key b prev_kv", WatchRequest{Key: []byte("b"), StartRev: 2, PrevKV: true}, []string{allPrev[1], allPrev[5]}},
		{"no put", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 2, NoPut: true}, []string{all[3], all[5]}},
		{"no delete", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 2, NoDelete: true}, []string{all[0], all[1], all[2], all[4], all[6]}},
		{"no delete prev_kv", WatchRequest{Key: []byte("a"), StartRev: 2, NoDelete: true, PrevKV: true}, []string{allPrev[0], allPrev[2], allPrev[6]}},
		{"no put no delete", WatchRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRev: 2, NoPut: true, NoDelete: true}, nil},
		{"range [b, c)", WatchRequest{Key: []byte("b"), RangeEnd: []byte("c"), StartRev: 2}, []string{all[1], all[5]}},
		{"from key b", WatchRequest{Key: []byte("b"), RangeEnd: []byte{0}, StartRev: 2}, []string{all[1], all[4], all[5]}},
		{"no such key", WatchRequest{Key: []byte("zz"), StartRev: 2}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := h.s.NewWatchStream()
			id, created, err := ws.Watch(tt.req)
			if err != nil || created != 7 {
				t.Fatalf("Watch: id %d rev %d err %v", id, created, err)
			}
			msgs, rev := ws.Collect()
			if rev != 7 {
				t.Fatalf("Collect read to %d, want 7", rev)
			}
			if len(tt.want) == 0 {
				if len(msgs) != 0 {
					t.Fatalf("messages for a watcher with nothing to see: %+v", msgs)
				}
			} else {
				if len(msgs) != 1 || msgs[0].WatchID != id || msgs[0].Revision != 7 || msgs[0].CompactRevision != 0 {
					t.Fatalf("messages %+v, want one for %d at revision 7", msgs, id)
				}
				if got := evsStr(msgs[0].Events); !slices.Equal(got, tt.want) {
					t.Fatalf("events\n got %q\nwant %q", got, tt.want)
				}
			}
			// Caught up: nothing more, Ready blocks.
			if msgs, _ := ws.Collect(); len(msgs) != 0 {
				t.Fatalf("second Collect: %+v", msgs)
			}
			select {
			case <-ws.Ready():
				t.Fatal("Ready fired for a synced stream")
			default:
			}
		})
	}
}

func TestWatchDeleteEventCarriesOnlyKeyAndRevision(t *testing.T) {
	h := newHarness(t)
	h.mustGrant(9, 10)
	h.putLease("k", "value", 9) // 2
	h.put("k", "value2")        // 3
	ws := h.s.NewWatchStream()
	id := mustWatch(t, ws, WatchRequest{Key: []byte("k")})
	h.del("k", "") // 4
	msgs, _ := ws.Collect()
	if len(msgs) != 1 || len(msgs[0].Events) != 1 || msgs[0].WatchID != id {
		t.Fatalf("messages %+v", msgs)
	}
	ev := msgs[0].Events[0]
	if ev.Type != mvccpb.DELETE || string(ev.Kv.Key) != "k" || ev.Kv.ModRevision != 4 ||
		ev.Kv.Value != nil || ev.Kv.CreateRevision != 0 || ev.Kv.Version != 0 || ev.Kv.Lease != 0 || ev.PrevKv != nil {
		t.Fatalf("delete event %s", evStr(ev))
	}
}

func TestWatchSingleKeyVsPrefix(t *testing.T) {
	h := newHarness(t)
	ws := h.s.NewWatchStream()
	ids := map[string]int64{
		"single foo":     mustWatch(t, ws, WatchRequest{Key: []byte("foo")}),
		"prefix foo":     mustWatch(t, ws, WatchRequest{Key: []byte("foo"), RangeEnd: []byte("fop")}),
		"prefix foo/":    mustWatch(t, ws, WatchRequest{Key: []byte("foo/"), RangeEnd: []byte("foo0")}),
		"from key foo":   mustWatch(t, ws, WatchRequest{Key: []byte("foo"), RangeEnd: []byte{0}}),
		"single foo/bar": mustWatch(t, ws, WatchRequest{Key: []byte("foo/bar")}),
	}
	for _, k := range []string{"fo", "foo", "foo/bar", "foo/baz", "foobar", "fop", "FOO", "zzz"} {
		h.put(k, "v")
	}
	want := map[string][]string{
		"single foo":     {"foo"},
		"prefix foo":     {"foo", "foo/bar", "foo/baz", "foobar"},
		"prefix foo/":    {"foo/bar", "foo/baz"},
		"from key foo":   {"foo", "foo/bar", "foo/baz", "foobar", "fop", "zzz"},
		"single foo/bar": {"foo/bar"},
	}
	evs, _ := collectAll(t, ws)
	for name, id := range ids {
		var got []string
		for _, ev := range evs[id] {
			got = append(got, string(ev.Kv.Key))
		}
		if !slices.Equal(got, want[name]) {
			t.Errorf("%s: keys %q, want %q", name, got, want[name])
		}
	}
}

func TestWatchIDs(t *testing.T) {
	h := newHarness(t)
	ws := h.s.NewWatchStream()
	req := WatchRequest{Key: []byte("k")}
	steps := []struct {
		id     int64 // requested, 0 = auto
		wantID int64
		err    error
	}{
		{0, 0, nil},
		{0, 1, nil},
		{0, 2, nil},
		{10, 10, nil},
		{1, -1, ErrWatcherDuplicateID},
		{10, -1, ErrWatcherDuplicateID},
		{0, 3, nil},
		{4, 4, nil},
		{0, 5, nil}, // skips the explicitly taken 4
	}
	for i, st := range steps {
		r := req
		r.ID = st.id
		id, rev, err := ws.Watch(r)
		if err != st.err || id != st.wantID || rev != 1 {
			t.Fatalf("step %d: Watch(id %d) = %d, %d, %v; want %d, 1, %v", i, st.id, id, rev, err, st.wantID, st.err)
		}
	}
	if ws.Len() != 7 {
		t.Fatalf("Len() = %d, want 7", ws.Len())
	}
	// IDs are not reused after a cancel.
	if err := ws.Cancel(0); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := ws.Watch(req); id != 6 {
		t.Fatalf("auto ID after cancel = %d, want 6", id)
	}
	if err := ws.Cancel(0); err != ErrWatcherNotFound {
		t.Fatalf("second Cancel(0) = %v, want ErrWatcherNotFound", err)
	}
	if err := ws.Cancel(99); err != ErrWatcherNotFound {
		t.Fatalf("Cancel(99) = %v, want ErrWatcherNotFound", err)
	}
	// Another stream numbers its watchers independently.
	if id, _, _ := h.s.NewWatchStream().Watch(req); id != 0 {
		t.Fatalf("first auto ID of a new stream = %d", id)
	}
	// Collect answers in watch ID order.
	h.put("k", "v")
	msgs, _ := ws.Collect()
	var got []int64
	for _, m := range msgs {
		got = append(got, m.WatchID)
	}
	if !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6, 10}) {
		t.Fatalf("message order %v", got)
	}
}

func TestWatchRangeValidation(t *testing.T) {
	tests := []struct {
		name     string
		key, end []byte
		err      error
	}{
		{"key above end", []byte("b"), []byte("a"), ErrWatcherRangeEmpty},
		{"key equal end", []byte("a"), []byte("a"), ErrWatcherRangeEmpty},
		{"binary key above end", []byte{0xff}, []byte{0x01}, ErrWatcherRangeEmpty},
		{"single key", []byte("a"), nil, nil},
		{"empty end is single key", []byte("a"), []byte{}, nil},
		{"from key", []byte("a"), []byte{0}, nil},
		{"range", []byte("a"), []byte("b"), nil},
	}
	h := newHarness(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := h.s.NewWatchStream()
			id, _, err := ws.Watch(WatchRequest{Key: tt.key, RangeEnd: tt.end})
			if err != tt.err {
				t.Fatalf("Watch = %v, want %v", err, tt.err)
			}
			if err != nil && (id != -1 || ws.Len() != 0) {
				t.Fatalf("failed watch: id %d, %d watchers", id, ws.Len())
			}
			if err == nil {
				if r, ok := ws.Request(id); !ok || string(r.Key) != string(tt.key) {
					t.Fatalf("Request(%d) = %+v, %v", id, r, ok)
				}
			}
		})
	}
}

func TestWatchCancel(t *testing.T) {
	h := newHarness(t)
	ws := h.s.NewWatchStream()
	keep := mustWatch(t, ws, WatchRequest{Key: []byte("k")})
	drop := mustWatch(t, ws, WatchRequest{Key: []byte("k"), PrevKV: true})
	h.put("k", "1")
	if msgs, _ := ws.Collect(); len(msgs) != 2 {
		t.Fatalf("before cancel: %+v", msgs)
	}
	if err := ws.Cancel(drop); err != nil {
		t.Fatal(err)
	}
	if ws.Len() != 1 {
		t.Fatalf("Len() = %d, want 1", ws.Len())
	}
	if _, ok := ws.Request(drop); ok {
		t.Fatal("cancelled watcher still has a request")
	}
	h.put("k", "2")
	msgs, _ := ws.Collect()
	if len(msgs) != 1 || msgs[0].WatchID != keep {
		t.Fatalf("after cancel: %+v", msgs)
	}
	// Cancelling a watcher that is behind drops its backlog.
	behind := mustWatch(t, ws, WatchRequest{Key: []byte("k"), StartRev: 2})
	if err := ws.Cancel(behind); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ws.Ready():
		t.Fatal("Ready fired for a cancelled backlog")
	default:
	}
}

func TestWatchReady(t *testing.T) {
	h := newHarness(t)
	ws := h.s.NewWatchStream()
	blocked := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return false
		default:
			return true
		}
	}
	if !blocked(ws.Ready()) {
		t.Fatal("Ready fired on an empty stream")
	}
	id := mustWatch(t, ws, WatchRequest{Key: []byte("k")})
	ready := ws.Ready()
	if !blocked(ready) {
		t.Fatal("Ready fired for a synced watcher")
	}
	if !ws.Synced(id, 1) || ws.Synced(id, 2) {
		t.Fatal("Synced wrong for a new watcher")
	}
	h.mustGrant(1, 10) // no revision change
	if !blocked(ready) {
		t.Fatal("Ready fired for a lease grant")
	}
	h.put("other", "x") // a change the watcher does not match still wakes it
	if blocked(ready) {
		t.Fatal("channel from Ready not closed by a put")
	}
	if blocked(ws.Ready()) {
		t.Fatal("Ready blocks while the watcher is behind")
	}
	if msgs, _ := ws.Collect(); len(msgs) != 0 {
		t.Fatalf("messages for a non-matching put: %+v", msgs)
	}
	if !blocked(ws.Ready()) || !ws.Synced(id, 2) {
		t.Fatal("not synced after Collect")
	}
	h.put("k", "1")
	if blocked(ws.Ready()) {
		t.Fatal("Ready blocks after a matching put")
	}
	if msgs, _ := ws.Collect(); len(msgs) != 1 || msgs[0].Revision != 3 {
		t.Fatalf("messages %+v", msgs)
	}
	// A watcher starting in the past makes the stream ready at once.
	mustWatch(t, ws, WatchRequest{Key: []byte("k"), StartRev: 2})
	if blocked(ws.Ready()) {
		t.Fatal("Ready blocks with a watcher behind")
	}
	ws.Collect()
	if !blocked(ws.Ready()) {
		t.Fatal("Ready fired after catching up")
	}
	// Compaction moves the store too.
	ready = ws.Ready()
	h.mustCompact(2)
	if blocked(ready) {
		t.Fatal("compaction did not close the Ready channel")
	}
}

func TestWatchFutureStartRevision(t *testing.T) {
	h := newHarness(t)
	h.put("k", "1") // 2
	ws := h.s.NewWatchStream()
	id, created, err := ws.Watch(WatchRequest{Key: []byte("k"), StartRev: 5})
	if err != nil || created != 2 {
		t.Fatalf("Watch: %d %v", created, err)
	}
	for rev := int64(3); rev <= 4; rev++ {
		h.put("k", fmt.Sprint(rev))
		select {
		case <-ws.Ready():
			t.Fatalf("Ready fired at revision %d, before the start revision", rev)
		default:
		}
		if msgs, _ := ws.Collect(); len(msgs) != 0 {
			t.Fatalf("revision %d delivered early: %+v", rev, msgs)
		}
	}
	h.put("k", "5")
	h.put("k", "6")
	select {
	case <-ws.Ready():
	default:
		t.Fatal("Ready blocks once the start revision is reached")
	}
	msgs, _ := ws.Collect()
	if len(msgs) != 1 || msgs[0].WatchID != id || msgs[0].Revision != 6 {
		t.Fatalf("messages %+v", msgs)
	}
	want := []string{putEv("k", "5", 2, 5, 4), putEv("k", "6", 2, 6, 5)}
	if got := evsStr(msgs[0].Events); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestWatchSyncedDelivery(t *testing.T) {
	h := watchFixture(t) // at 7
	ws := h.s.NewWatchStream()
	id, created, err := ws.Watch(WatchRequest{Key: []byte("a"), PrevKV: true})
	if err != nil || created != 7 {
		t.Fatalf("Watch: %d %v", created, err)
	}
	if msgs, _ := ws.Collect(); len(msgs) != 0 {
		t.Fatalf("a synced watcher replayed history: %+v", msgs)
	}
	h.put("a", "4") // 8
	h.put("b", "x") // 9
	msgs, rev := ws.Collect()
	if rev != 9 || len(msgs) != 1 || msgs[0].WatchID != id || msgs[0].Revision != 9 {
		t.Fatalf("messages %+v (read to %d)", msgs, rev)
	}
	want := []string{withPrev(putEv("a", "4", 7, 8, 2), "a", "3", 7, 7, 1)}
	if got := evsStr(msgs[0].Events); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

// watchBatchFixture writes revisions 2..revs+1. Each writes "w/<rev>/a" and
// "w/<rev>/b" in one txn, except every 7th which writes "x" alone.
func watchBatchFixture(t *testing.T, revs int) (h *harness, matching []int64) {
	h = newHarness(t)
	for i := 0; i < revs; i++ {
		rev := int64(i + 2)
		if rev%7 == 0 {
			h.put("x", fmt.Sprint(rev))
			continue
		}
		p := fmt.Sprintf("w/%05d/", rev)
		h.mustTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut(p+"a", "v"), opPut(p+"b", "v")}})
		matching = append(matching, rev)
	}
	return h, matching
}

func TestWatchBatching(t *testing.T) {
	const revs = 2700
	h, matching := watchBatchFixture(t, revs)
	cur := h.s.Rev()
	if cur != revs+1 {
		t.Fatalf("fixture at %d", cur)
	}
	ws := h.s.NewWatchStream()
	wid := mustWatch(t, ws, WatchRequest{Key: []byte("w/"), RangeEnd: []byte("w0"), StartRev: 2})
	xid := mustWatch(t, ws, WatchRequest{Key: []byte("x"), StartRev: 2})

	var got []*mvccpb.Event
	var batches []WatchResponse
	xEvents := 0
	for calls := 0; ; calls++ {
		if calls > 10 {
			t.Fatal("stream did not catch up")
		}
		select {
		case <-ws.Ready():
		default:
		}
		msgs, _ := ws.Collect()
		if len(msgs) == 0 {
			break
		}
		for _, m := range msgs {
			if m.WatchID == xid {
				xEvents += len(m.Events)
				continue
			}
			batches = append(batches, m)
			got = append(got, m.Events...)
		}
	}
	// 2700 revisions, 2315 of them matching: three batches.
	wantBatches := (len(matching) + MaxBatchRevs - 1) / MaxBatchRevs
	if len(batches) != wantBatches {
		t.Fatalf("%d batches, want %d", len(batches), wantBatches)
	}
	prevRev := int64(1)
	for i, b := range batches {
		if b.WatchID != wid || len(b.Events) == 0 {
			t.Fatalf("batch %d: %+v", i, b)
		}
		first, last := b.Events[0].Kv.ModRevision, b.Events[len(b.Events)-1].Kv.ModRevision
		if first <= prevRev {
			t.Fatalf("batch %d starts at %d, previous batch covered up to %d", i, first, prevRev)
		}
		distinct := map[int64]bool{}
		for _, ev := range b.Events {
			distinct[ev.Kv.ModRevision] = true
		}
		if len(distinct) > MaxBatchRevs {
			t.Fatalf("batch %d holds %d revisions", i, len(distinct))
		}
		if i < len(batches)-1 {
			if len(distinct) != MaxBatchRevs {
				t.Fatalf("batch %d holds %d revisions, want %d", i, len(distinct), MaxBatchRevs)
			}
			if b.Revision != last {
				t.Fatalf("batch %d: Revision %d, want its last revision %d", i, b.Revision, last)
			}
		} else if b.Revision != cur {
			t.Fatalf("last batch: Revision %d, want %d", b.Revision, cur)
		}
		// No revision is split: both writes of each revision are here.
		if len(b.Events) != 2*len(distinct) {
			t.Fatalf("batch %d: %d events for %d revisions", i, len(b.Events), len(distinct))
		}
		prevRev = b.Revision
	}
	// Nothing lost or duplicated, in order.
	if len(got) != 2*len(matching) {
		t.Fatalf("%d events, want %d", len(got), 2*len(matching))
	}
	for i, rev := range matching {
		for j, suffix := range []string{"a", "b"} {
			ev := got[2*i+j]
			if want := fmt.Sprintf("w/%05d/%s", rev, suffix); string(ev.Kv.Key) != want || ev.Kv.ModRevision != rev {
				t.Fatalf("event %d = %s, want %s at %d", 2*i+j, evStr(ev), want, rev)
			}
		}
	}
	if want := revs - len(matching); xEvents != want {
		t.Fatalf("x watcher got %d events, want %d", xEvents, want)
	}
	if !ws.Synced(wid, cur) || !ws.Synced(xid, cur) {
		t.Fatal("watchers not synced")
	}
}

// A watcher that matches nothing in a long history still catches up, over
// several Collect calls, and gets the one event it matches exactly once.
func TestWatchLongScanCatchesUp(t *testing.T) {
	h := newHarness(t)
	const perTxn, txns = 200, 400 // 80,000 history entries > maxScan
	for i := 0; i < txns; i++ {
		ops := make([]*pb.RequestOp, perTxn)
		for j := range ops {
			ops[j] = opPut(fmt.Sprintf("n/%03d", j), "v")
		}
		h.mustTxn(&pb.TxnRequest{Success: ops})
	}
	h.put("target", "hit")
	ws := h.s.NewWatchStream()
	id := mustWatch(t, ws, WatchRequest{Key: []byte("target"), StartRev: 2})
	evs, msgs := collectAll(t, ws)
	if len(evs[id]) != 1 || string(evs[id][0].Kv.Value) != "hit" || len(msgs) != 1 {
		t.Fatalf("events %q in %d messages", evsStr(evs[id]), len(msgs))
	}
	if !ws.Synced(id, h.s.Rev()) {
		t.Fatal("not synced")
	}
}

// Apply runs concurrently with reads and watch streams (run with -race).
func TestWatchConcurrentWithApply(t *testing.T) {
	h := newHarness(t)
	const n = 2000
	type result struct {
		evs []*mvccpb.Event
		err error
	}
	start := make(chan struct{})
	done := make(chan result, 1)
	ws := h.s.NewWatchStream()
	id := mustWatch(t, ws, WatchRequest{Key: []byte("k/"), RangeEnd: []byte("k0"), PrevKV: true})
	go func() {
		<-start
		var evs []*mvccpb.Event
		for len(evs) < n {
			<-ws.Ready()
			msgs, _ := ws.Collect()
			for _, m := range msgs {
				if m.WatchID != id || m.CompactRevision != 0 {
					done <- result{err: fmt.Errorf("unexpected message %+v", m)}
					return
				}
				evs = append(evs, m.Events...)
			}
			if _, err := h.s.Range(&pb.RangeRequest{Key: []byte("k/"), RangeEnd: []byte("k0"), Limit: 5}); err != nil {
				done <- result{err: err}
				return
			}
			h.s.Digest()
		}
		done <- result{evs: evs}
	}()
	close(start)
	for i := 0; i < n; i++ {
		h.put(fmt.Sprintf("k/%d", i%10), fmt.Sprint(i))
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.evs) != n {
		t.Fatalf("%d events, want %d", len(r.evs), n)
	}
	for i, ev := range r.evs {
		if ev.Kv.ModRevision != int64(i+2) || string(ev.Kv.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d = %s", i, evStr(ev))
		}
		if i >= 10 && (ev.PrevKv == nil || string(ev.PrevKv.Value) != fmt.Sprint(i-10)) {
			t.Fatalf("event %d prev = %s", i, evStr(ev))
		}
	}
}

// Watchers on one stream that select different keys get different events,
// even when their key and range_end bytes concatenate to the same string.
func TestWatchDistinctBinaryRangesOnOneStream(t *testing.T) {
	h := newHarness(t)
	ws := h.s.NewWatchStream()
	w1 := mustWatch(t, ws, WatchRequest{Key: []byte("\x00"), RangeEnd: []byte("\x00\x01")})
	w2 := mustWatch(t, ws, WatchRequest{Key: []byte("\x00\x00"), RangeEnd: []byte("\x01")})
	w3 := mustWatch(t, ws, WatchRequest{Key: []byte("a\x00"), RangeEnd: []byte("b")})
	w4 := mustWatch(t, ws, WatchRequest{Key: []byte("a"), RangeEnd: []byte("b"), NoDelete: true})
	w5 := mustWatch(t, ws, WatchRequest{Key: []byte("a"), RangeEnd: []byte("b"), PrevKV: true})
	for _, k := range []string{"\x00", "\x00\x00", "\x00\x05", "a", "a\x00", "a\x00z"} {
		h.put(k, "v")
	}
	h.del("a", "")
	want := map[int64][]string{
		w1: {"PUT \x00", "PUT \x00\x00"},
		w2: {"PUT \x00\x00", "PUT \x00\x05"},
		w3: {"PUT a\x00", "PUT a\x00z"},
		w4: {"PUT a", "PUT a\x00", "PUT a\x00z"},
		w5: {"PUT a", "PUT a\x00", "PUT a\x00z", "DELETE a +prev"},
	}
	evs, _ := collectAll(t, ws)
	for id, w := range want {
		var got []string
		for _, ev := range evs[id] {
			s := ev.Type.String() + " " + string(ev.Kv.Key)
			if ev.PrevKv != nil {
				s += " +prev"
			}
			got = append(got, s)
		}
		if !slices.Equal(got, w) {
			t.Errorf("watcher %d: %q, want %q", id, got, w)
		}
	}
}

// Many watchers with the same selection at different positions each get
// exactly their own backlog.
func TestWatchSameRangeDifferentPositions(t *testing.T) {
	h := newHarness(t)
	for i := 0; i < 10; i++ {
		h.put("p/"+fmt.Sprint(i), "v") // revs 2..11
	}
	ws := h.s.NewWatchStream()
	ids := map[int64]int64{} // watch ID -> start revision
	for _, start := range []int64{2, 5, 5, 11, 0, 9, 2} {
		ids[mustWatch(t, ws, WatchRequest{Key: []byte("p/"), RangeEnd: []byte("p0"), StartRev: start})] = start
	}
	h.put("p/x", "v") // 12
	evs, _ := collectAll(t, ws)
	for id, start := range ids {
		from := start
		if from == 0 {
			from = 12
		}
		if got, want := len(evs[id]), int(12-from+1); got != want {
			t.Errorf("watcher %d from %d: %d events, want %d", id, start, got, want)
			continue
		}
		for i, ev := range evs[id] {
			if ev.Kv.ModRevision != from+int64(i) {
				t.Errorf("watcher %d from %d: event %d at revision %d", id, start, i, ev.Kv.ModRevision)
			}
		}
	}
}
