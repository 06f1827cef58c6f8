package fsm

import (
	"bytes"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// txn evaluates every compare of the transaction (and of the transactions
// nested in the chosen branches) against the state before it, checks the
// chosen operations, and only then applies them, so a failing check changes
// nothing.
func (s *Store) txn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	path := s.txnPath(r, s.rev)
	if err := s.checkTxnOps(r, path); err != nil {
		return nil, err
	}
	w := s.newWrite()
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}}
	if err := w.applyTxn(r, path, resp); err != nil {
		// checkTxnOps makes this unreachable; a half-applied transaction
		// would be a divergence, not a client error.
		panic("fsm: txn failed after its checks: " + err.Error())
	}
	resp.Header.Revision = w.end()
	return resp, nil
}

// IsTxnReadOnly reports whether no branch of r, nested ones included, writes.
func IsTxnReadOnly(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestPut, *pb.RequestOp_RequestDeleteRange:
				return false
			case *pb.RequestOp_RequestTxn:
				if !IsTxnReadOnly(v.RequestTxn) {
					return false
				}
			}
		}
	}
	return true
}

// TxnReadOnly answers a transaction without writes from the current state.
// Safe for concurrent use.
func (s *Store) TxnReadOnly(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	path := s.txnPath(r, s.rev)
	if err := s.checkTxnOps(r, path); err != nil {
		return nil, err
	}
	w := &writeTxn{s: s, rev: s.rev + 1}
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}}
	if err := w.applyTxn(r, path, resp); err != nil {
		return nil, err
	}
	resp.Header.Revision = s.rev
	return resp, nil
}

// txnPath lists the outcome of every transaction that will run, depth first
// in the order of the chosen branches.
func (s *Store) txnPath(r *pb.TxnRequest, rev int64) []bool {
	ok := true
	for _, c := range r.Compare {
		if !s.compare(c, rev) {
			ok = false
			break
		}
	}
	path := []bool{ok}
	for _, op := range branch(r, ok) {
		if t, isTxn := op.Request.(*pb.RequestOp_RequestTxn); isTxn {
			path = append(path, s.txnPath(t.RequestTxn, rev)...)
		}
	}
	return path
}

func branch(r *pb.TxnRequest, ok bool) []*pb.RequestOp {
	if ok {
		return r.Success
	}
	return r.Failure
}

func (s *Store) compare(c *pb.Compare, rev int64) bool {
	matched := false
	all := true
	s.visible(c.Key, c.RangeEnd, rev, func(kv *mvccpb.KeyValue) bool {
		matched = true
		if !compareKV(c, kv) {
			all = false
			return false
		}
		return true
	})
	if !matched {
		// A missing key has no value to compare; its revisions, version
		// and lease compare as zero.
		return c.Target != pb.Compare_VALUE && compareKV(c, &mvccpb.KeyValue{})
	}
	return all
}

func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var cmp int
	switch c.Target {
	case pb.Compare_VALUE:
		cmp = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_VERSION:
		cmp = cmpInt64(kv.Version, c.GetVersion())
	case pb.Compare_CREATE:
		cmp = cmpInt64(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		cmp = cmpInt64(kv.ModRevision, c.GetModRevision())
	case pb.Compare_LEASE:
		cmp = cmpInt64(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case pb.Compare_EQUAL:
		return cmp == 0
	case pb.Compare_NOT_EQUAL:
		return cmp != 0
	case pb.Compare_GREATER:
		return cmp > 0
	case pb.Compare_LESS:
		return cmp < 0
	}
	return true
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkTxnOps checks the operations on the chosen path against the state
// before the transaction: puts (lease, ignore_*) and range revisions.
func (s *Store) checkTxnOps(r *pb.TxnRequest, path []bool) error {
	_, err := s.walkChecks(r, path)
	return err
}

func (s *Store) walkChecks(r *pb.TxnRequest, path []bool) (int, error) {
	used := 1
	for _, op := range branch(r, path[0]) {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestPut:
			if err := s.checkPut(v.RequestPut); err != nil {
				return 0, err
			}
		case *pb.RequestOp_RequestRange:
			// Any nonzero revision below the compact revision, negative
			// ones included, is compacted (as in etcd's txn checks).
			if rev := v.RequestRange.Revision; rev > s.rev {
				return 0, ErrFutureRev
			} else if rev != 0 && rev < s.compactRev {
				return 0, ErrCompacted
			}
		case *pb.RequestOp_RequestTxn:
			n, err := s.walkChecks(v.RequestTxn, path[used:])
			if err != nil {
				return 0, err
			}
			used += n
		}
	}
	return used, nil
}

// applyTxn runs the chosen branch of r into resp and returns how much of
// path it consumed through applyTxnPath.
func (w *writeTxn) applyTxn(r *pb.TxnRequest, path []bool, resp *pb.TxnResponse) error {
	_, err := w.applyTxnPath(r, path, resp)
	return err
}

func (w *writeTxn) applyTxnPath(r *pb.TxnRequest, path []bool, resp *pb.TxnResponse) (int, error) {
	used := 1
	resp.Succeeded = path[0]
	ops := branch(r, path[0])
	resp.Responses = make([]*pb.ResponseOp, len(ops))
	for i, op := range ops {
		switch v := op.Request.(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := w.s.rangeAt(v.RequestRange, w.readRev())
			if err != nil {
				return 0, err
			}
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}}
		case *pb.RequestOp_RequestPut:
			pr := &pb.PutResponse{Header: &pb.ResponseHeader{}}
			w.applyPut(v.RequestPut, pr)
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: pr}}
		case *pb.RequestOp_RequestDeleteRange:
			dr := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
			w.applyDeleteRange(v.RequestDeleteRange, dr)
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}
		case *pb.RequestOp_RequestTxn:
			tr := &pb.TxnResponse{Header: &pb.ResponseHeader{}}
			n, err := w.applyTxnPath(v.RequestTxn, path[used:], tr)
			if err != nil {
				return 0, err
			}
			used += n
			resp.Responses[i] = &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: tr}}
		default:
			resp.Responses[i] = &pb.ResponseOp{}
		}
	}
	return used, nil
}
