package fsm

import (
	"bytes"
	"encoding/binary"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Watch limits.
const (
	// MaxBatchRevs bounds how many revisions one catch-up message carries;
	// a revision is never split across messages.
	MaxBatchRevs = 1000
	// maxScan bounds how many history entries one Collect call reads for
	// one watcher, so a far-behind watcher cannot hold the lock for long.
	maxScan = 64 * 1024
)

// WatchRequest describes one watcher.
type WatchRequest struct {
	// ID is the watch ID the client asked for; 0 lets the stream choose.
	ID       int64
	Key      []byte
	RangeEnd []byte // as in a range request: nil a single key, "\x00" all keys >= Key
	StartRev int64  // 0 (or negative, before any compaction) means "from the next revision"
	PrevKV   bool
	NoPut    bool
	NoDelete bool
}

// WatchResponse is one message for one watcher. Revision is the highest
// revision the message completes: every matching event at or below it has
// been delivered once the message has. A message with CompactRevision set
// ends the watcher.
type WatchResponse struct {
	WatchID         int64
	Events          []*mvccpb.Event
	Revision        int64
	CompactRevision int64
}

type watcher struct {
	id   int64
	key  []byte
	end  []byte // ascendRange form
	next int64  // next revision to deliver
	req  WatchRequest
	// sig identifies what the watcher selects (range, filters, prev_kv):
	// watchers with equal sig and position get the same events.
	sig string
}

func watcherSig(key, end []byte, r WatchRequest) string {
	b := make([]byte, 0, 4+2*binary.MaxVarintLen64+len(key)+len(end))
	for _, f := range []bool{end == nil, r.PrevKV, r.NoPut, r.NoDelete} {
		if f {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	return string(append(b, end...))
}

func (w *watcher) matches(key []byte) bool {
	switch {
	case w.end == nil:
		return bytes.Equal(key, w.key)
	case len(w.end) == 0:
		return bytes.Compare(key, w.key) >= 0
	}
	return bytes.Compare(key, w.key) >= 0 && bytes.Compare(key, w.end) < 0
}

// WatchStream is the set of watchers of one client stream. Its watchers
// read the store's history from their own position, so the store never
// buffers for them and a slow stream only falls behind: it catches up from
// history, or, once compaction has passed it, is told so.
//
// A WatchStream is not safe for concurrent use: one goroutine (the
// stream's sender) owns it.
type WatchStream struct {
	s        *Store
	watchers []*watcher // by ID
	nextID   int64
	out      []WatchResponse // reused by Collect
}

// NewWatchStream returns an empty stream over s.
func (s *Store) NewWatchStream() *WatchStream { return &WatchStream{s: s} }

// Watch adds a watcher and returns its ID and the store revision to put in
// the "created" reply.
func (ws *WatchStream) Watch(r WatchRequest) (int64, int64, error) {
	cur, compactRev := ws.s.Revs()
	end := rangeEnd(r.RangeEnd)
	if len(end) > 0 && bytes.Compare(r.Key, end) >= 0 {
		return -1, cur, ErrWatcherRangeEmpty
	}
	id := r.ID
	if id == 0 {
		for ws.find(ws.nextID) >= 0 {
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	} else if ws.find(id) >= 0 {
		return -1, cur, ErrWatcherDuplicateID
	}
	next := r.StartRev
	switch {
	case next < 0 && compactRev >= 0:
		// As etcd: a negative start revision is below any compaction,
		// so the watcher is cancelled with the compact revision. Before
		// the first compaction it starts from the next revision.
	case next <= 0 || next > cur:
		next = max(cur+1, r.StartRev)
	}
	w := &watcher{id: id, key: r.Key, end: end, next: next, req: r, sig: watcherSig(r.Key, end, r)}
	i := sort.Search(len(ws.watchers), func(i int) bool { return ws.watchers[i].id > id })
	ws.watchers = append(ws.watchers, nil)
	copy(ws.watchers[i+1:], ws.watchers[i:])
	ws.watchers[i] = w
	return id, cur, nil
}

func (ws *WatchStream) find(id int64) int {
	i := sort.Search(len(ws.watchers), func(i int) bool { return ws.watchers[i].id >= id })
	if i < len(ws.watchers) && ws.watchers[i].id == id {
		return i
	}
	return -1
}

// Cancel removes a watcher.
func (ws *WatchStream) Cancel(id int64) error {
	i := ws.find(id)
	if i < 0 {
		return ErrWatcherNotFound
	}
	ws.watchers = append(ws.watchers[:i], ws.watchers[i+1:]...)
	return nil
}

// Len returns the number of watchers.
func (ws *WatchStream) Len() int { return len(ws.watchers) }

// Request returns the request a watcher was created with.
func (ws *WatchStream) Request(id int64) (WatchRequest, bool) {
	if i := ws.find(id); i >= 0 {
		return ws.watchers[i].req, true
	}
	return WatchRequest{}, false
}

// Synced reports whether a watcher has been sent everything up to rev.
func (ws *WatchStream) Synced(id int64, rev int64) bool {
	i := ws.find(id)
	return i >= 0 && ws.watchers[i].next > rev
}

// Ready returns a channel that is closed when Collect has something to do:
// at once if a watcher is behind the current revision, otherwise when the
// store next changes.
func (ws *WatchStream) Ready() <-chan struct{} {
	ch, cur := ws.s.Changed()
	for _, w := range ws.watchers {
		if w.next <= cur {
			return closedCh
		}
	}
	return ch
}

var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Collect advances every watcher as far as history allows and returns the
// messages to send, in watcher order. A watcher left behind by compaction
// gets one message with CompactRevision set and is removed. Watchers with
// nothing new produce no message. It returns the revision up to which every
// watcher has now been given its events: the store's revision, or less when
// a watcher far behind was given one batch. The returned slice is reused by
// the next Collect.
func (ws *WatchStream) Collect() ([]WatchResponse, int64) {
	s := ws.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	cur := s.rev
	out := ws.out[:0]
	// Watchers that select the same events from the same position share
	// one result (the common case: many watchers on one prefix). The
	// events are read-only, so sharing the slice is safe.
	type shared struct {
		from, next int64
		resp       WatchResponse
		ok         bool
	}
	var memo map[string]shared
	kept := ws.watchers[:0]
	for _, w := range ws.watchers {
		if w.next > cur {
			kept = append(kept, w)
			continue
		}
		if w.next < s.compactRev {
			out = append(out, WatchResponse{WatchID: w.id, CompactRevision: s.compactRev})
			continue
		}
		kept = append(kept, w)
		if m, hit := memo[w.sig]; hit && m.from == w.next {
			w.next = m.next
			if m.ok {
				r := m.resp
				r.WatchID = w.id
				out = append(out, r)
			}
			continue
		}
		from := w.next
		resp, ok := ws.advance(w, cur)
		if memo == nil {
			memo = make(map[string]shared)
		}
		memo[w.sig] = shared{from: from, next: w.next, resp: resp, ok: ok}
		if ok {
			out = append(out, resp)
		}
	}
	for i := len(kept); i < len(ws.watchers); i++ {
		ws.watchers[i] = nil
	}
	ws.watchers = kept
	ws.out = out
	// What every watcher has been given: the store's revision, unless a
	// batch limit left a watcher behind.
	reached := cur
	for _, w := range ws.watchers {
		reached = min(reached, w.next-1)
	}
	return out, reached
}

// advance reads history for w from w.next up to cur. Caller holds s.mu.
func (ws *WatchStream) advance(w *watcher, cur int64) (WatchResponse, bool) {
	h := ws.s.history
	i := sort.Search(len(h), func(i int) bool { return h[i].kv.ModRevision >= w.next })
	var evs []*mvccpb.Event
	revs := 0        // distinct revisions among evs
	last := int64(0) // revision of the entry read last
	upTo := cur
	for n := 0; i < len(h); i++ {
		v := h[i]
		rev := v.kv.ModRevision
		if rev != last {
			// A revision boundary: the batch may end here, never inside one.
			if last != 0 && (revs >= MaxBatchRevs || n >= maxScan) {
				upTo = last
				break
			}
			last = rev
		}
		n++
		if !w.matches(v.kv.Key) || (v.tombstone() && w.req.NoDelete) || (!v.tombstone() && w.req.NoPut) {
			continue
		}
		if len(evs) == 0 || evs[len(evs)-1].Kv.ModRevision != rev {
			revs++
		}
		ev := v.ev
		if w.req.PrevKV && v.prev != nil && !v.prev.tombstone() {
			ev = &mvccpb.Event{Type: v.ev.Type, Kv: v.kv, PrevKv: v.prev.kv}
		}
		evs = append(evs, ev)
	}
	w.next = upTo + 1
	if len(evs) == 0 {
		return WatchResponse{}, false
	}
	return WatchResponse{WatchID: w.id, Events: evs, Revision: upTo}, true
}
