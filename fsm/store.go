package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// noCompaction is the compact revision of a store never compacted: as in
// etcd, compacting at revision 0 is then allowed once.
const noCompaction = -1

// MaxLeaseTTL is the largest TTL a lease may be granted with (etcd's limit).
const MaxLeaseTTL = 9000000000

// Config holds the parameters that change what Apply computes. Every member
// of a cluster must use the same values.
type Config struct {
	// MinLeaseTTL is the smallest TTL a lease gets; shorter grants are raised
	// to it, as etcd does (its default is 2 s with default raft timing).
	MinLeaseTTL int64
	// MaxKeyBytes bounds the keys a committed entry may write (0: no
	// bound); an entry past it is refused, so the system of record never
	// meets a key it cannot store. Node sets it from the sink's limit.
	MaxKeyBytes int
}

// DefaultConfig returns etcd's defaults.
func DefaultConfig() Config { return Config{MinLeaseTTL: 2} }

// Validate reports a configuration Apply cannot work with.
func (c Config) Validate() error {
	if c.MinLeaseTTL < 1 {
		return fmt.Errorf("fsm: min lease TTL must be at least 1, got %d", c.MinLeaseTTL)
	}
	if c.MaxKeyBytes < 0 {
		return fmt.Errorf("fsm: max key bytes must not be negative, got %d", c.MaxKeyBytes)
	}
	return nil
}

// Store is the MVCC state machine. Apply must be called from one goroutine
// at a time (raft's apply goroutine); every other method is safe for
// concurrent use.
type Store struct {
	cfg Config

	mu         sync.RWMutex
	keys       *btree.BTreeG[*keyRecord]
	history    []*version // every version with mod revision >= compactRev, in (rev, sub) order
	rev        int64      // current revision
	compactRev int64
	leases     map[int64]*lease
	// leaseVersion counts changes to the lease set (grants, revokes), so
	// the system of record rewrites leases only when they changed.
	leaseVersion uint64
	// users and roles are the auth store (auth.go); authVersion counts
	// its changes, as leaseVersion does the leases'.
	users       map[string]*authpb.User
	roles       map[string]*authpb.Role
	authVersion uint64
	// authOn, authRev and authKey are the auth switch, the auth revision
	// (the count of auth changes; etcd reports it plus one) and the token
	// signing key (authtoken.go), set at each enable.
	authOn bool
	// authOnFast mirrors authOn for AuthEnabled, which every client call
	// asks, without the lock.
	authOnFast atomic.Bool
	authRev    uint64
	authKey    []byte
	// imp is the import in progress (importing.go), nil when none;
	// importingFast mirrors it for Importing, without the lock.
	imp           *importState
	importingFast atomic.Bool
	// wipes counts the import resets applied (importing.go).
	wipes   uint64
	changed chan struct{} // closed and replaced whenever rev or compactRev moves

	applied     atomic.Uint64
	lastChange  atomic.Uint64 // index of the last entry that was not a no-op
	appliedMu   sync.Mutex
	appliedWait chan struct{} // closed and replaced after each Apply
}

// New returns an empty store at revision 1, as a fresh etcd is.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, appliedWait: make(chan struct{})}
	s.reset()
	return s, nil
}

func (s *Store) reset() {
	s.keys = btree.NewG(32, func(a, b *keyRecord) bool { return bytes.Compare(a.key, b.key) < 0 })
	s.history = nil
	s.rev = 1
	s.compactRev = noCompaction
	s.leases = make(map[int64]*lease)
	s.users = make(map[string]*authpb.User)
	s.roles = make(map[string]*authpb.Role)
	s.setImport(nil)
	s.changed = make(chan struct{})
}

// Result is what Apply returns for one entry: exactly one of the response
// fields is set, or Err holds a per-request failure (which changed nothing,
// the revision included).
type Result struct {
	Put         *pb.PutResponse
	DeleteRange *pb.DeleteRangeResponse
	Txn         *pb.TxnResponse
	Compaction  *pb.CompactionResponse
	LeaseGrant  *pb.LeaseGrantResponse
	LeaseRevoke *pb.LeaseRevokeResponse
	// Auth is the response of an auth write: the pb.Auth*Response of its
	// request's kind.
	Auth any
	// Import is the header of an import entry (importing.go).
	Import *pb.ResponseHeader
	Err    error
}

// Apply applies one committed entry at raft index idx. An entry it cannot
// decode or does not know changes nothing, leaves the applied index where
// it was, and comes back as ErrUnknownEntry: the caller must stop before
// applying anything after it, since applying less than every member would
// let the replicas diverge. An entry it knows but that breaks what the
// system of record relies on (see checkEntry) is refused in the Result,
// alike on every member. Apply goroutine only.
func (s *Store) Apply(idx uint64, data []byte) *Result {
	return s.ApplyBatch([]Entry{{Index: idx, Data: data}})[0]
}

// Entry is one committed raft entry for ApplyBatch. Skip marks an index
// with nothing to apply (a configuration change): it only moves the
// applied index.
type Entry struct {
	Index uint64
	Data  []byte
	Skip  bool
}

// ApplyBatch applies committed entries in order, each as Apply does, and
// announces the new revision and applied index once, after the last: the
// system of record, the watchers and the reads waiting on an index wake
// once per batch instead of once per entry. It stops at the first entry
// that comes back as ErrUnknownEntry; the results after it are nil, and
// the applied index stays before it. A Skip entry's result is nil. Apply
// goroutine only.
func (s *Store) ApplyBatch(entries []Entry) []*Result {
	results := make([]*Result, len(entries))
	s.mu.RLock()
	before, beforeCompact := s.rev, s.compactRev
	s.mu.RUnlock()
	applied := uint64(0)
	for i, e := range entries {
		if e.Skip {
			applied = e.Index
			continue
		}
		res := s.applyOne(e.Index, e.Data)
		results[i] = res
		if errors.Is(res.Err, ErrUnknownEntry) {
			break
		}
		applied = e.Index
	}
	s.mu.Lock()
	if s.rev != before || s.compactRev != beforeCompact {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	if applied > s.applied.Load() {
		s.setApplied(applied)
	}
	return results
}

// applyOne applies one entry without announcing it (ApplyBatch does).
func (s *Store) applyOne(idx uint64, data []byte) *Result {
	r, imp, err := decodeEntry(data)
	if err != nil {
		return &Result{Err: fmt.Errorf("%w: index %d: %v", ErrUnknownEntry, idx, err)}
	}
	if imp != nil {
		res := s.applyImport(idx, imp)
		s.lastChange.Store(idx)
		return res
	}
	if r.Size() == 0 {
		// The empty request is the no-op a new leader commits to learn
		// that everything before its term has been applied.
		return &Result{}
	}
	res := s.apply(idx, r)
	if res == nil {
		return &Result{Err: fmt.Errorf("%w: index %d: a request this release does not know", ErrUnknownEntry, idx)}
	}
	s.lastChange.Store(idx)
	return res
}

func (s *Store) apply(idx uint64, r *pb.InternalRaftRequest) *Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkEntry(r); err != nil {
		return &Result{Err: err}
	}
	if err := s.refuseWhileImporting(r); err != nil && EntryRelease(r) != "" {
		return &Result{Err: err}
	}
	switch {
	case r.Put != nil:
		resp, err := s.putTxn(r.Put)
		return &Result{Put: resp, Err: err}
	case r.DeleteRange != nil:
		resp := s.deleteRangeTxn(r.DeleteRange)
		return &Result{DeleteRange: resp}
	case r.Txn != nil:
		resp, err := s.txn(r.Txn)
		return &Result{Txn: resp, Err: err}
	case r.Compaction != nil:
		resp, err := s.compact(r.Compaction.Revision)
		return &Result{Compaction: resp, Err: err}
	case r.LeaseGrant != nil:
		resp, err := s.leaseGrant(idx, r.LeaseGrant)
		return &Result{LeaseGrant: resp, Err: err}
	case r.LeaseRevoke != nil:
		resp, err := s.leaseRevoke(r.LeaseRevoke.ID)
		return &Result{LeaseRevoke: resp, Err: err}
	}
	if isAuth(r) {
		return s.applyAuth(r)
	}
	return nil
}

// AppliedIndex returns the raft index of the last applied entry. Safe for
// concurrent use.
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// LastChangeIndex returns the raft index of the last applied entry that
// was a request (no-ops and configuration changes are not): a read needs
// the store to have applied that far, not further. Safe for concurrent use.
func (s *Store) LastChangeIndex() uint64 { return s.lastChange.Load() }

// AppliedWait returns a channel closed after the next Apply (or restore).
// Read it, then check AppliedIndex, to wait without missing an update.
func (s *Store) AppliedWait() <-chan struct{} {
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	return s.appliedWait
}

func (s *Store) setApplied(idx uint64) {
	s.applied.Store(idx)
	s.appliedMu.Lock()
	close(s.appliedWait)
	s.appliedWait = make(chan struct{})
	s.appliedMu.Unlock()
}

// MinLeaseTTL returns the smallest TTL the store grants a lease (its
// Config's). Safe for concurrent use.
func (s *Store) MinLeaseTTL() int64 { return s.cfg.MinLeaseTTL }

// Rev returns the current revision. Safe for concurrent use.
func (s *Store) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// Revs returns the current and the compact revision together; the compact
// revision is -1 until the first compaction.
func (s *Store) Revs() (rev, compactRev int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev, s.compactRev
}

// Changed returns a channel that is closed when the revision or the compact
// revision next moves, and the current revision it was taken at.
func (s *Store) Changed() (<-chan struct{}, int64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed, s.rev
}

// KeyCount returns the number of live keys.
func (s *Store) KeyCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	s.keys.Ascend(func(kr *keyRecord) bool {
		if l := kr.latest(); l != nil && !l.tombstone() {
			n++
		}
		return true
	})
	return n
}

// mkEvent builds the shared event for a version.
func mkEvent(kv *mvccpb.KeyValue, del bool) *mvccpb.Event {
	if del {
		return &mvccpb.Event{Type: mvccpb.DELETE, Kv: kv}
	}
	return &mvccpb.Event{Type: mvccpb.PUT, Kv: kv}
}
