package fsm

import (
	"bytes"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// version is one revision of one key: a put or a tombstone. Its kv and ev
// are created once by Apply and never modified, so readers may share them.
type version struct {
	kv   *mvccpb.KeyValue
	ev   *mvccpb.Event
	sub  int32    // position among the changes of its revision
	prev *version // the key's previous version, nil if none is retained
}

func (v *version) tombstone() bool { return v.ev.Type == mvccpb.DELETE }

// keyRecord holds the retained versions of one key, oldest first.
type keyRecord struct {
	key      []byte
	versions []*version
}

func (kr *keyRecord) latest() *version {
	if len(kr.versions) == 0 {
		return nil
	}
	return kr.versions[len(kr.versions)-1]
}

// at returns the version visible at rev (nil if the key did not exist then).
func (kr *keyRecord) at(rev int64) *version {
	i := sort.Search(len(kr.versions), func(i int) bool { return kr.versions[i].kv.ModRevision > rev })
	if i == 0 {
		return nil
	}
	v := kr.versions[i-1]
	if v.tombstone() {
		return nil
	}
	return v
}

// ascendRange calls fn for every key record in [key, end), where end == nil
// means the single key and an empty non-nil end means every key >= key.
// Caller holds s.mu.
func (s *Store) ascendRange(key, end []byte, fn func(*keyRecord) bool) {
	switch {
	case end == nil:
		if kr, ok := s.keys.Get(&keyRecord{key: key}); ok {
			fn(kr)
		}
	case len(end) == 0:
		s.keys.AscendGreaterOrEqual(&keyRecord{key: key}, fn)
	case bytes.Compare(key, end) < 0:
		s.keys.AscendRange(&keyRecord{key: key}, &keyRecord{key: end}, fn)
	}
}

// rangeEnd turns a request's range_end into ascendRange's form: absent is a
// single key, "\x00" is every key >= key.
func rangeEnd(end []byte) []byte {
	if len(end) == 0 {
		return nil
	}
	if len(end) == 1 && end[0] == 0 {
		return []byte{}
	}
	return end
}

// visible calls fn with every live key-value in [key, end) at rev, in key
// order. Caller holds s.mu.
func (s *Store) visible(key, end []byte, rev int64, fn func(*mvccpb.KeyValue) bool) {
	s.ascendRange(key, rangeEnd(end), func(kr *keyRecord) bool {
		if v := kr.at(rev); v != nil {
			return fn(v.kv)
		}
		return true
	})
}

// Range answers a range request from the current state or from history.
// The header carries only the revision; the caller fills in the rest.
// Safe for concurrent use.
func (s *Store) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rangeAt(r, s.rev)
}

// rangeAt answers r as of a store whose current revision is cur (inside a
// write transaction, cur includes the transaction's own changes).
func (s *Store) rangeAt(r *pb.RangeRequest, cur int64) (*pb.RangeResponse, error) {
	rev := r.Revision
	if rev > cur {
		return nil, ErrFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < s.compactRev {
		return nil, ErrCompacted
	}

	// Filters and sorting need every match; otherwise one more than the
	// limit is enough to know whether there are more.
	fetchAll := r.SortOrder != pb.RangeRequest_NONE ||
		r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	var kvs []*mvccpb.KeyValue
	count := int64(0)
	s.visible(r.Key, r.RangeEnd, rev, func(kv *mvccpb.KeyValue) bool {
		count++
		if r.CountOnly {
			return true
		}
		if fetchAll || r.Limit <= 0 || int64(len(kvs)) <= r.Limit {
			kvs = append(kvs, kv)
		}
		return true
	})

	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: cur}, Count: count}
	if r.CountOnly {
		return resp, nil
	}
	kvs = pruneKVs(kvs, r)
	sortKVs(kvs, r.SortOrder, r.SortTarget)
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for i, kv := range kvs {
			c := *kv
			c.Value = nil
			kvs[i] = &c
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

func pruneKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	if r.MinModRevision == 0 && r.MaxModRevision == 0 && r.MinCreateRevision == 0 && r.MaxCreateRevision == 0 {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision:
		case r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision:
		case r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision:
		case r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision:
		default:
			out = append(out, kv)
		}
	}
	return out
}

// sortKVs orders kvs as etcd does: results come in key order, a target other
// than the key implies ascending order, and ties keep whatever order
// sort.Sort leaves them in, which is what etcd's clients observe too.
func sortKVs(kvs []*mvccpb.KeyValue, order pb.RangeRequest_SortOrder, target pb.RangeRequest_SortTarget) {
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order != pb.RangeRequest_ASCEND && order != pb.RangeRequest_DESCEND {
		// NONE, or an order this version does not know: etcd 3.4 leaves
		// the results in key order.
		return
	}
	var less func(a, b *mvccpb.KeyValue) bool
	switch target {
	case pb.RangeRequest_KEY:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }
	case pb.RangeRequest_VERSION:
		less = func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version }
	case pb.RangeRequest_CREATE:
		less = func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision }
	case pb.RangeRequest_MOD:
		less = func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision }
	case pb.RangeRequest_VALUE:
		less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }
	default:
		return
	}
	var sorter sort.Interface = kvSorter{kvs, less}
	if order == pb.RangeRequest_DESCEND {
		sorter = sort.Reverse(sorter)
	}
	sort.Sort(sorter)
}

type kvSorter struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (k kvSorter) Len() int           { return len(k.kvs) }
func (k kvSorter) Swap(i, j int)      { k.kvs[i], k.kvs[j] = k.kvs[j], k.kvs[i] }
func (k kvSorter) Less(i, j int) bool { return k.less(k.kvs[i], k.kvs[j]) }

// writeTxn collects the changes of one revision. Changes are visible to
// reads at readRev at once; end publishes the revision.
type writeTxn struct {
	s       *Store
	rev     int64
	changes []*version
}

func (s *Store) newWrite() *writeTxn { return &writeTxn{s: s, rev: s.rev + 1} }

// readRev is the revision at which the transaction sees its own writes.
func (w *writeTxn) readRev() int64 {
	if len(w.changes) > 0 {
		return w.rev
	}
	return w.s.rev
}

func (w *writeTxn) record(key []byte) *keyRecord {
	if kr, ok := w.s.keys.Get(&keyRecord{key: key}); ok {
		return kr
	}
	kr := &keyRecord{key: key}
	w.s.keys.ReplaceOrInsert(kr)
	return kr
}

func (w *writeTxn) add(kr *keyRecord, kv *mvccpb.KeyValue, del bool, prev *version) {
	v := &version{kv: kv, ev: mkEvent(kv, del), sub: int32(len(w.changes)), prev: prev}
	kr.versions = append(kr.versions, v)
	w.changes = append(w.changes, v)
}

// put writes key at the transaction's revision and moves its lease.
func (w *writeTxn) put(key, value []byte, leaseID int64) {
	kr := w.record(key)
	prev := kr.latest()
	kv := &mvccpb.KeyValue{Key: kr.key, Value: value, ModRevision: w.rev, Version: 1, CreateRevision: w.rev, Lease: leaseID}
	if prev != nil && !prev.tombstone() {
		kv.CreateRevision = prev.kv.CreateRevision
		kv.Version = prev.kv.Version + 1
		w.s.detach(prev.kv.Lease, kr.key)
	} else {
		prev = nil
	}
	w.s.attach(leaseID, kr.key)
	w.add(kr, kv, false, prev)
}

// deleteRange deletes every live key in [key, end) and returns the deleted
// key-values in key order.
func (w *writeTxn) deleteRange(key, end []byte) []*mvccpb.KeyValue {
	var victims []*keyRecord
	w.s.ascendRange(key, rangeEnd(end), func(kr *keyRecord) bool {
		if l := kr.latest(); l != nil && !l.tombstone() {
			victims = append(victims, kr)
		}
		return true
	})
	deleted := make([]*mvccpb.KeyValue, 0, len(victims))
	for _, kr := range victims {
		prev := kr.latest()
		w.s.detach(prev.kv.Lease, kr.key)
		w.add(kr, &mvccpb.KeyValue{Key: kr.key, ModRevision: w.rev}, true, prev)
		deleted = append(deleted, prev.kv)
	}
	return deleted
}

// end publishes the transaction and returns the store's revision after it.
func (w *writeTxn) end() int64 {
	if len(w.changes) > 0 {
		w.s.rev = w.rev
		w.s.history = append(w.s.history, w.changes...)
	}
	return w.s.rev
}

func (s *Store) putTxn(r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := s.checkPut(r); err != nil {
		return nil, err
	}
	w := s.newWrite()
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{}}
	w.applyPut(r, resp)
	resp.Header.Revision = w.end()
	return resp, nil
}

// checkPut reports why a put cannot be applied to the current state.
func (s *Store) checkPut(r *pb.PutRequest) error {
	var cur *version
	if kr, ok := s.keys.Get(&keyRecord{key: r.Key}); ok {
		if l := kr.latest(); l != nil && !l.tombstone() {
			cur = l
		}
	}
	if (r.IgnoreValue || r.IgnoreLease) && cur == nil {
		return ErrKeyNotFound
	}
	if !r.IgnoreLease && r.Lease != 0 {
		if _, ok := s.leases[r.Lease]; !ok {
			return ErrLeaseNotFound
		}
	}
	return nil
}

func (w *writeTxn) applyPut(r *pb.PutRequest, resp *pb.PutResponse) {
	value, leaseID := r.Value, r.Lease
	if r.PrevKv || r.IgnoreValue || r.IgnoreLease {
		if kr, ok := w.s.keys.Get(&keyRecord{key: r.Key}); ok {
			if prev := kr.at(w.readRev()); prev != nil {
				if r.PrevKv {
					resp.PrevKv = prev.kv
				}
				if r.IgnoreValue {
					value = prev.kv.Value
				}
				if r.IgnoreLease {
					leaseID = prev.kv.Lease
				}
			}
		}
	}
	w.put(r.Key, value, leaseID)
	resp.Header.Revision = w.rev
}

func (s *Store) deleteRangeTxn(r *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	w := s.newWrite()
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	w.applyDeleteRange(r, resp)
	resp.Header.Revision = w.end()
	return resp
}

func (w *writeTxn) applyDeleteRange(r *pb.DeleteRangeRequest, resp *pb.DeleteRangeResponse) {
	deleted := w.deleteRange(r.Key, r.RangeEnd)
	resp.Deleted = int64(len(deleted))
	if r.PrevKv && len(deleted) > 0 {
		resp.PrevKvs = deleted
	}
	resp.Header.Revision = w.readRev()
}

// compact drops every version that no read at or after rev can see, and the
// history below rev.
func (s *Store) compact(rev int64) (*pb.CompactionResponse, error) {
	if rev <= s.compactRev {
		return nil, ErrCompacted
	}
	if rev > s.rev {
		return nil, ErrFutureRev
	}
	var empty []*keyRecord
	s.keys.Ascend(func(kr *keyRecord) bool {
		i := sort.Search(len(kr.versions), func(i int) bool { return kr.versions[i].kv.ModRevision > rev })
		if i == 0 {
			return true
		}
		// The version visible at rev stays readable, and a deletion at
		// exactly rev stays in history for watches that start there.
		keep := i - 1
		if kr.versions[keep].tombstone() && kr.versions[keep].kv.ModRevision < rev {
			keep = i
		}
		if keep == 0 {
			return true
		}
		kept := make([]*version, len(kr.versions)-keep)
		copy(kept, kr.versions[keep:])
		if len(kept) > 0 {
			kept[0].prev = nil
		}
		kr.versions = kept
		if len(kept) == 0 {
			empty = append(empty, kr)
		}
		return true
	})
	for _, kr := range empty {
		s.keys.Delete(kr)
	}
	i := sort.Search(len(s.history), func(i int) bool { return s.history[i].kv.ModRevision >= rev })
	s.history = append([]*version(nil), s.history[i:]...)
	s.compactRev = rev
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: s.rev}}, nil
}
