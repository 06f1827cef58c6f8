package fsm

import (
	"bytes"
	"fmt"

	"github.com/google/btree"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// The import mode (see importentry.go for the entries): the store takes
// etcd's keys with their own revisions, and refuses client writes, from an
// ImportBegin to an ImportFinish. What it records (the source's cluster
// ID, each imported lease's remaining TTL) is replicated state, in the
// snapshot (version 4) and in the system of record.

// importState is the replicated state of an import in progress.
type importState struct {
	source uint64 // the source cluster's ID
	base   int64  // the source revision the key space is read at
}

// ImportStatus describes the store's import.
type ImportStatus struct {
	Importing bool
	Source    uint64 // the source cluster's ID, while importing
	Base      int64  // the source revision the key space is read at
	Rev       int64
}

// Import reports whether the store imports and from which cluster. Safe
// for concurrent use.
func (s *Store) Import() ImportStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := ImportStatus{Rev: s.rev}
	if s.imp != nil {
		st.Importing, st.Source, st.Base = true, s.imp.source, s.imp.base
	}
	return st
}

// Importing reports whether the store refuses client writes because it
// imports. Safe for concurrent use.
func (s *Store) Importing() bool { return s.importingFast.Load() }

func (s *Store) setImport(imp *importState) {
	s.imp = imp
	s.importingFast.Store(imp != nil)
}

// refuseWhileImporting refuses a client write while the store imports.
// Caller holds s.mu.
func (s *Store) refuseWhileImporting(r *pb.InternalRaftRequest) error {
	if s.imp == nil {
		return nil
	}
	if r.Txn != nil && IsTxnReadOnly(r.Txn) {
		return nil
	}
	return ErrImporting
}

// applyImport applies one import entry (ApplyBatch announces it).
func (s *Store) applyImport(idx uint64, e *ImportEntry) *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ValidateImport(e, Limits{MaxKeyBytes: s.cfg.MaxKeyBytes}); err != nil {
		return &Result{Err: err}
	}
	if e.Kind != ImportBegin && s.imp == nil {
		return &Result{Err: ErrNotImporting}
	}
	var err error
	switch e.Kind {
	case ImportBegin:
		err = s.importBegin(e.Msg.(*pb.ResponseHeader))
	case ImportLease:
		s.importLease(idx, e.Msg.(*pb.LeaseTimeToLiveResponse))
	case ImportKeys:
		err = s.importKeys(e.Msg.(*pb.RangeResponse))
	case ImportCompact:
		err = s.importCompact(e.Msg.(*pb.CompactionRequest).Revision)
	case ImportEvents:
		err = s.importEvents(e.Msg.(*pb.WatchResponse))
	case ImportFinish:
		err = s.importFinish(idx, e.Msg.(*pb.LeaseLeasesResponse))
	case ImportReset:
		s.importReset()
	}
	if err != nil {
		return &Result{Err: err}
	}
	return &Result{Import: &pb.ResponseHeader{Revision: s.rev}}
}

func (s *Store) importBegin(h *pb.ResponseHeader) error {
	if s.rev > 1 || s.keys.Len() > 0 || len(s.leases) > 0 {
		return fmt.Errorf("%w: revision %d, %d keys, %d leases", ErrImportNotEmpty, s.rev, s.keys.Len(), len(s.leases))
	}
	s.setImport(&importState{source: h.ClusterId, base: h.Revision})
	return nil
}

// importLease creates or updates a lease with the TTL it was granted and
// the seconds it has left at the source; one that has none left gets one,
// so that it expires as soon as the import finishes.
func (s *Store) importLease(idx uint64, r *pb.LeaseTimeToLiveResponse) {
	left := max(r.TTL, 1)
	if l, ok := s.leases[r.ID]; ok {
		l.ttl, l.remaining = r.GrantedTTL, left
	} else {
		s.leases[r.ID] = &lease{id: r.ID, ttl: r.GrantedTTL, remaining: left, grantIndex: idx, keys: make(map[string]struct{})}
	}
	s.leaseVersion++
}

// importKeys adds keys as they are at the source. Every key is checked
// before any is added, so a refused entry changes nothing.
func (s *Store) importKeys(r *pb.RangeResponse) error {
	upTo := r.Header.Revision
	if upTo < s.rev || (upTo == s.rev && len(r.Kvs) > 0) {
		return fmt.Errorf("%w: keys up to revision %d on a store at revision %d", ErrImportOrder, upTo, s.rev)
	}
	last := r.Kvs[:0:0]
	for i, kv := range r.Kvs {
		switch {
		case kv.ModRevision <= s.rev || kv.ModRevision > upTo:
			return fmt.Errorf("%w: key %q at revision %d, not in (%d, %d]", ErrImportOrder, kv.Key, kv.ModRevision, s.rev, upTo)
		case i > 0 && (kv.ModRevision < last[0].ModRevision ||
			kv.ModRevision == last[0].ModRevision && bytes.Compare(kv.Key, last[0].Key) <= 0):
			return fmt.Errorf("%w: key %q at revision %d after key %q at revision %d", ErrImportOrder, kv.Key, kv.ModRevision, last[0].Key, last[0].ModRevision)
		case s.live(kv.Key) != nil:
			return fmt.Errorf("%w: key %q imported twice", ErrImportOrder, kv.Key)
		}
		if err := s.checkImportLease(kv); err != nil {
			return err
		}
		last = append(last[:0], kv)
	}
	var sub int32
	for i, kv := range r.Kvs {
		if i > 0 && kv.ModRevision != r.Kvs[i-1].ModRevision {
			sub = 0
		}
		c := &mvccpb.KeyValue{Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease}
		s.restoreVersion(&mvccpb.Event{Type: mvccpb.PUT, Kv: c}, sub)
		sub++
	}
	s.rev = upTo
	return nil
}

// importCompact ends the key space at revision rev, the store's: history
// below it is gone, as in etcd compacted at rev.
func (s *Store) importCompact(rev int64) error {
	if rev != s.rev {
		return fmt.Errorf("%w: key space at revision %d on a store at revision %d", ErrImportOrder, rev, s.rev)
	}
	if rev <= 1 || rev <= s.compactRev {
		return nil
	}
	_, err := s.compact(rev)
	return err
}

// importEvents applies one source revision's events at the same revision.
func (s *Store) importEvents(r *pb.WatchResponse) error {
	rev := r.Header.Revision
	if rev != s.rev+1 {
		return fmt.Errorf("%w: events of revision %d on a store at revision %d", ErrImportOrder, rev, s.rev)
	}
	seen := make(map[string]struct{}, len(r.Events))
	for _, ev := range r.Events {
		kv := ev.Kv
		if _, dup := seen[string(kv.Key)]; dup {
			return fmt.Errorf("%w: key %q twice in revision %d", ErrImportOrder, kv.Key, rev)
		}
		seen[string(kv.Key)] = struct{}{}
		if kv.ModRevision != rev {
			return fmt.Errorf("%w: key %q at revision %d in the events of revision %d", ErrImportOrder, kv.Key, kv.ModRevision, rev)
		}
		if ev.Type == mvccpb.DELETE {
			if s.live(kv.Key) == nil {
				return fmt.Errorf("%w: deletion of key %q, which the store does not have", ErrImportOrder, kv.Key)
			}
			continue
		}
		if err := s.checkImportLease(kv); err != nil {
			return err
		}
	}
	w := s.newWrite()
	for _, ev := range r.Events {
		kr := w.record(ev.Kv.Key)
		prev := s.live(ev.Kv.Key)
		if prev != nil {
			s.detach(prev.kv.Lease, kr.key)
		}
		if ev.Type == mvccpb.DELETE {
			w.add(kr, &mvccpb.KeyValue{Key: kr.key, ModRevision: rev}, true, prev)
			continue
		}
		kv := ev.Kv
		c := &mvccpb.KeyValue{Key: kr.key, Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: rev, Version: kv.Version, Lease: kv.Lease}
		s.attach(c.Lease, kr.key)
		w.add(kr, c, false, prev)
	}
	w.end()
	return nil
}

// importFinish leaves import mode at the store's revision. A lease the
// source no longer has goes, unless keys still name it: it then expires
// at once, as the source's lease did. Every lease starts its remaining
// TTL afresh with the leader's clock (its grant index moves to idx).
func (s *Store) importFinish(idx uint64, r *pb.LeaseLeasesResponse) error {
	if r.Header.Revision != s.rev {
		return fmt.Errorf("%w: finish at revision %d on a store at revision %d", ErrImportOrder, r.Header.Revision, s.rev)
	}
	keep := make(map[int64]struct{}, len(r.Leases))
	for _, l := range r.Leases {
		keep[l.ID] = struct{}{}
	}
	for id, l := range s.leases {
		if _, ok := keep[id]; !ok {
			if len(l.keys) == 0 {
				delete(s.leases, id)
				continue
			}
			l.remaining = 1
		}
		l.grantIndex = idx
	}
	s.leaseVersion++
	s.setImport(nil)
	return nil
}

// importReset wipes the store back to revision 1, still importing, for
// a new ImportBegin. The auth store stays.
func (s *Store) importReset() {
	s.keys = btree.NewG(32, func(a, b *keyRecord) bool { return bytes.Compare(a.key, b.key) < 0 })
	s.history = nil
	s.rev, s.compactRev = 1, noCompaction
	s.leases = make(map[int64]*lease)
	s.leaseVersion++
	s.wipes++
	s.setImport(&importState{})
	// Announced here: the batch around it may end at the revision it
	// started at.
	close(s.changed)
	s.changed = make(chan struct{})
}

// checkImportLease refuses a key whose lease the store does not have.
func (s *Store) checkImportLease(kv *mvccpb.KeyValue) error {
	if kv.Lease == 0 {
		return nil
	}
	if _, ok := s.leases[kv.Lease]; !ok {
		return fmt.Errorf("%w: key %q names lease %x, not imported", ErrLeaseNotFound, kv.Key, kv.Lease)
	}
	return nil
}

// live returns the live version of key, or nil. Caller holds s.mu.
func (s *Store) live(key []byte) *version {
	kr, ok := s.keys.Get(&keyRecord{key: key})
	if !ok {
		return nil
	}
	if l := kr.latest(); l != nil && !l.tombstone() {
		return l
	}
	return nil
}

func validateImportKV(kv *mvccpb.KeyValue, l Limits) error {
	if err := l.checkWriteKey(kv.Key); err != nil {
		return err
	}
	if kv.CreateRevision < 1 || kv.CreateRevision > kv.ModRevision || kv.Version < 1 {
		return fmt.Errorf("%w: key %q with create revision %d, mod revision %d, version %d",
			ErrImportInvalid, kv.Key, kv.CreateRevision, kv.ModRevision, kv.Version)
	}
	return nil
}

// ImportWipes counts the import resets the store has applied: the system
// of record wipes its copy when its count differs. Safe for concurrent
// use.
func (s *Store) ImportWipes() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.wipes
}

// importedLeases reports whether a lease still carries the remaining TTL
// of its import. Caller holds s.mu.
func (s *Store) importedLeases() bool {
	for _, l := range s.leases {
		if l.remaining > 0 {
			return true
		}
	}
	return false
}

// LoadImport puts a store just loaded from the system of record back in
// import mode, as the system of record says it was. Apply goroutine only,
// before raft starts.
func (s *Store) LoadImport(importing bool, source uint64, base int64, wipes uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wipes = wipes
	if importing {
		s.setImport(&importState{source: source, base: base})
	}
}
