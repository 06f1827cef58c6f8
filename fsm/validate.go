package fsm

import (
	"github.com/google/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// MaxTxnOps is etcd's default --max-txn-ops: the longest compare, success
// or failure list a transaction may have.
const MaxTxnOps = 128

// Limits are the static bounds a request is validated against. Every door
// a request can come through (the client port, the peer port) validates
// with the same Limits.
type Limits struct {
	// MaxKeyBytes bounds the keys a put may write; 0: no bound beyond the
	// request size.
	MaxKeyBytes int
	// MaxTxnOps bounds each list of a transaction; 0 means MaxTxnOps.
	MaxTxnOps int
}

func (l Limits) maxTxnOps() int {
	if l.MaxTxnOps <= 0 {
		return MaxTxnOps
	}
	return l.MaxTxnOps
}

// The Validate functions are etcd's request checks, in etcd's order, made
// before a request is proposed. They read nothing but the request, so any
// member gives the same answer. Safe for concurrent use.

// ValidateRange checks a range, alone or inside a transaction. An unknown
// sort order is accepted and sorts nothing, as in etcd 3.4; an unknown sort
// target is refused (etcd 3.4 crashes on it when a sort order is given).
func ValidateRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return ErrInvalidSortOption
	}
	return nil
}

// ValidatePut checks a put, alone or inside a transaction.
func ValidatePut(r *pb.PutRequest, l Limits) error {
	if err := l.checkWriteKey(r.Key); err != nil {
		return err
	}
	switch {
	case r.IgnoreValue && len(r.Value) != 0:
		return ErrValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return ErrLeaseProvided
	}
	return nil
}

// ValidateDeleteRange checks a delete, alone or inside a transaction.
func ValidateDeleteRange(r *pb.DeleteRangeRequest) error {
	if len(r.Key) == 0 {
		return ErrEmptyKey
	}
	return nil
}

// ValidateLeaseGrant checks a lease grant. A TTL below the minimum is not
// an error: the grant raises it, as etcd does.
func ValidateLeaseGrant(r *pb.LeaseGrantRequest) error {
	if r.TTL > MaxLeaseTTL {
		return ErrLeaseTTLTooLarge
	}
	return nil
}

// ValidateTxn checks a transaction: etcd's static limits (no list longer
// than the op limit, nested transactions sharing it; no empty key; every
// operation valid), then that no key is written twice. The second check
// runs in O(n log² n) for n operations.
func ValidateTxn(r *pb.TxnRequest, l Limits) error {
	if err := checkTxnStatic(r, l, l.maxTxnOps()); err != nil {
		return err
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		if _, err := checkWrites(ops); err != nil {
			return err
		}
	}
	return nil
}

// checkTxnStatic is etcd's checkTxnRequest: a nested transaction may use
// what its parent's longest list left of the budget.
func checkTxnStatic(r *pb.TxnRequest, l Limits, maxOps int) error {
	n := max(len(r.Compare), len(r.Success), len(r.Failure))
	if n > maxOps {
		return ErrTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return ErrEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := checkOpStatic(op, l, maxOps-n); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkOpStatic(op *pb.RequestOp, l Limits, maxOps int) error {
	switch v := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		if v.RequestRange != nil {
			return ValidateRange(v.RequestRange)
		}
	case *pb.RequestOp_RequestPut:
		if v.RequestPut != nil {
			return ValidatePut(v.RequestPut, l)
		}
	case *pb.RequestOp_RequestDeleteRange:
		if v.RequestDeleteRange != nil {
			return ValidateDeleteRange(v.RequestDeleteRange)
		}
	case *pb.RequestOp_RequestTxn:
		if v.RequestTxn != nil {
			return checkTxnStatic(v.RequestTxn, l, maxOps)
		}
	}
	// An operation with no request: etcd's answer.
	return ErrKeyNotFound
}

// writeSet is what one list of operations (with everything nested in it)
// writes: the keys it puts and the union of the ranges it deletes.
type writeSet struct {
	puts *btree.BTreeG[string]
	dels spans
}

func newWriteSet() *writeSet {
	return &writeSet{puts: btree.NewG(16, func(a, b string) bool { return a < b }), dels: newSpans()}
}

func (w *writeSet) size() int { return w.puts.Len() + w.dels.t.Len() }

// checkWrites is etcd's checkIntervals: it refuses one list of operations
// that writes a key twice, two puts of one key or a put of a key that a
// delete in the same list covers. Within the list, its deletes are taken
// first, then its nested transactions in order, then its puts; a put is
// checked against what was taken before it, so a nested transaction's
// deletes bind only what comes after it. A transaction's two branches never
// both run: each is checked against what came before the transaction, not
// against the other.
//
// The sets of two subtrees are compared and merged by walking the smaller
// one and looking it up in the larger (small-to-large), so an operation is
// walked O(log n) times: a request nested deep with many deletes and puts
// costs O(n log² n), not O(n²).
func checkWrites(ops []*pb.RequestOp) (*writeSet, error) {
	w := newWriteSet()
	for _, op := range ops {
		if v, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok && v.RequestDeleteRange != nil {
			w.dels.add(deleteSpan(v.RequestDeleteRange))
		}
	}
	for _, op := range ops {
		v, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok || v.RequestTxn == nil {
			continue
		}
		then, err := checkWrites(v.RequestTxn.Success)
		if err != nil {
			return nil, err
		}
		els, err := checkWrites(v.RequestTxn.Failure)
		if err != nil {
			return nil, err
		}
		if w.conflicts(then) || w.conflicts(els) {
			return nil, ErrDuplicateKey
		}
		w = merge(w, merge(then, els))
	}
	for _, op := range ops {
		v, ok := op.Request.(*pb.RequestOp_RequestPut)
		if !ok || v.RequestPut == nil {
			continue
		}
		k := string(v.RequestPut.Key)
		if w.puts.Has(k) || w.dels.covers(k) {
			return nil, ErrDuplicateKey
		}
		w.puts.ReplaceOrInsert(k)
	}
	return w, nil
}

// conflicts reports whether a nested branch puts a key that w already puts
// or deletes. It walks the smaller side.
func (w *writeSet) conflicts(b *writeSet) bool {
	hit := false
	if b.puts.Len() <= w.puts.Len() {
		b.puts.Ascend(func(k string) bool { hit = w.puts.Has(k); return !hit })
	} else {
		w.puts.Ascend(func(k string) bool { hit = b.puts.Has(k); return !hit })
	}
	if hit {
		return true
	}
	if b.puts.Len() <= w.dels.t.Len() {
		b.puts.Ascend(func(k string) bool { hit = w.dels.covers(k); return !hit })
	} else {
		w.dels.t.Ascend(func(s span) bool { hit = anyIn(b.puts, s); return !hit })
	}
	return hit
}

// merge returns the union of a and b, built by adding the smaller into
// the larger. Keys put in both are the two branches of one transaction.
func merge(a, b *writeSet) *writeSet {
	if a.size() < b.size() {
		a, b = b, a
	}
	b.puts.Ascend(func(k string) bool { a.puts.ReplaceOrInsert(k); return true })
	b.dels.t.Ascend(func(s span) bool { a.dels.add(s); return true })
	return a
}

// anyIn reports whether keys holds a key inside s.
func anyIn(keys *btree.BTreeG[string], s span) bool {
	hit := false
	keys.AscendGreaterOrEqual(s.start, func(k string) bool { hit = k < s.end; return false })
	return hit
}

// span is the half-open key interval [start, end).
type span struct{ start, end string }

// deleteSpan is the interval a delete covers for the duplicate check,
// compared as raw bytes as etcd 3.4 does: no range_end is the key alone,
// and a range_end not above the key (the "\x00" that means every key from
// the key on, among others) covers nothing. The delete itself still
// deletes every key >= key for "\x00".
func deleteSpan(r *pb.DeleteRangeRequest) span {
	if len(r.RangeEnd) == 0 {
		return span{string(r.Key), string(r.Key) + "\x00"}
	}
	return span{string(r.Key), string(r.RangeEnd)}
}

// spans is a union of intervals, kept as disjoint intervals ordered by
// start.
type spans struct{ t *btree.BTreeG[span] }

func newSpans() spans {
	return spans{t: btree.NewG(16, func(a, b span) bool { return a.start < b.start })}
}

// covers reports whether k lies in one of the intervals.
func (s spans) covers(k string) bool {
	hit := false
	s.t.DescendLessOrEqual(span{start: k}, func(sp span) bool { hit = k < sp.end; return false })
	return hit
}

// add unions [sp.start, sp.end) in, merging the intervals it touches.
func (s spans) add(sp span) {
	if sp.end <= sp.start {
		return
	}
	if prev, ok := s.before(sp.start); ok && prev.end >= sp.start {
		s.t.Delete(prev)
		sp.start, sp.end = prev.start, max(prev.end, sp.end)
	}
	for {
		next, ok := s.from(sp.start)
		if !ok || next.start > sp.end {
			break
		}
		s.t.Delete(next)
		sp.end = max(sp.end, next.end)
	}
	s.t.ReplaceOrInsert(sp)
}

// before returns the interval with the greatest start <= k.
func (s spans) before(k string) (span, bool) {
	var out span
	ok := false
	s.t.DescendLessOrEqual(span{start: k}, func(sp span) bool { out, ok = sp, true; return false })
	return out, ok
}

// from returns the interval with the least start >= k.
func (s spans) from(k string) (span, bool) {
	var out span
	ok := false
	s.t.AscendGreaterOrEqual(span{start: k}, func(sp span) bool { out, ok = sp, true; return false })
	return out, ok
}

// checkEntry refuses a committed entry that would break what the system of
// record relies on: a written key that is empty or longer than the
// configured bound, a lease TTL out of bounds, an auth write that
// ValidateAuth refuses (a plain password among them). The doors refuse these
// before proposing; this is the guard for an entry that came some other
// way.
func (s *Store) checkEntry(r *pb.InternalRaftRequest) error {
	switch {
	case r.Put != nil:
		return s.checkWriteKey(r.Put.Key)
	case r.DeleteRange != nil:
		return s.checkDeleteKey(r.DeleteRange.Key)
	case r.Txn != nil:
		return s.checkTxnKeys(r.Txn)
	case r.LeaseGrant != nil:
		return ValidateLeaseGrant(r.LeaseGrant)
	case isAuth(r):
		return ValidateAuth(r, Limits{MaxKeyBytes: s.cfg.MaxKeyBytes})
	}
	return nil
}

func (s *Store) checkWriteKey(k []byte) error {
	return Limits{MaxKeyBytes: s.cfg.MaxKeyBytes}.checkWriteKey(k)
}

// checkWriteKey refuses a key no write may store: an empty one, or one
// past the bound.
func (l Limits) checkWriteKey(k []byte) error {
	switch {
	case len(k) == 0:
		return ErrEmptyKey
	case l.MaxKeyBytes > 0 && len(k) > l.MaxKeyBytes:
		return ErrKeyTooLong
	}
	return nil
}

func (s *Store) checkDeleteKey(k []byte) error {
	if len(k) == 0 {
		return ErrEmptyKey
	}
	return nil
}

func (s *Store) checkTxnKeys(r *pb.TxnRequest) error {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			var err error
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestPut:
				if v.RequestPut != nil {
					err = s.checkWriteKey(v.RequestPut.Key)
				}
			case *pb.RequestOp_RequestDeleteRange:
				if v.RequestDeleteRange != nil {
					err = s.checkDeleteKey(v.RequestDeleteRange.Key)
				}
			case *pb.RequestOp_RequestTxn:
				if v.RequestTxn != nil {
					err = s.checkTxnKeys(v.RequestTxn)
				}
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}
