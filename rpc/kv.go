package rpc

import (
	"bytes"
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxTxnOps is etcd's default --max-txn-ops.
const MaxTxnOps = 128

type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRange(r); err != nil {
		return nil, err
	}
	resp, err := k.s.b.Range(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := k.s.checkPut(r); err != nil {
		return nil, err
	}
	resp, err := k.s.b.Put(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if len(r.Key) == 0 {
		return nil, rpctypes.ErrGRPCEmptyKey
	}
	resp, err := k.s.b.DeleteRange(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := k.s.checkTxn(r, MaxTxnOps); err != nil {
		return nil, err
	}
	// Overlapping writes are checked after the cheap checks so that a huge
	// request cannot make this quadratic.
	if _, _, err := checkWriteOverlap(r.Success); err != nil {
		return nil, err
	}
	if _, _, err := checkWriteOverlap(r.Failure); err != nil {
		return nil, err
	}
	resp, err := k.s.b.Txn(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := k.s.b.Compact(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func checkRange(r *pb.RangeRequest) error {
	if len(r.Key) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

// errGRPCKeyTooLong refuses keys the system of record cannot store.
var errGRPCKeyTooLong = status.Error(codes.InvalidArgument, "etcdserver: key is too long")

func (s *Server) checkPut(r *pb.PutRequest) error {
	switch {
	case len(r.Key) == 0:
		return rpctypes.ErrGRPCEmptyKey
	case s.cfg.MaxKeyBytes > 0 && len(r.Key) > s.cfg.MaxKeyBytes:
		return errGRPCKeyTooLong
	case r.IgnoreValue && len(r.Value) != 0:
		return rpctypes.ErrGRPCValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

// checkTxn applies etcd's static limits: no list longer than maxOps, no
// empty key, every operation valid; nested transactions share the budget.
func (s *Server) checkTxn(r *pb.TxnRequest, maxOps int) error {
	n := max(len(r.Compare), len(r.Success), len(r.Failure))
	if n > maxOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.Compare {
		if len(c.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			if err := s.checkOp(op, maxOps-n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) checkOp(op *pb.RequestOp, maxOps int) error {
	switch v := op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return checkRange(v.RequestRange)
	case *pb.RequestOp_RequestPut:
		return s.checkPut(v.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		if len(v.RequestDeleteRange.Key) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
		return nil
	case *pb.RequestOp_RequestTxn:
		return s.checkTxn(v.RequestTxn, maxOps)
	}
	return rpctypes.ErrGRPCKeyNotFound
}

// interval is a deleted key range; end nil means the single key, empty
// means every key >= key.
type interval struct{ key, end []byte }

func (iv interval) contains(k []byte) bool {
	switch {
	case iv.end == nil:
		return bytes.Equal(k, iv.key)
	case len(iv.end) == 0:
		return bytes.Compare(k, iv.key) >= 0
	}
	return bytes.Compare(k, iv.key) >= 0 && bytes.Compare(k, iv.end) < 0
}

// checkWriteOverlap rejects one list of operations that writes a key twice:
// two puts of one key, or a put of a key that a delete in the same list
// covers. Nested transactions are checked first, against this list's
// deletes; their two branches never both run, so a key put in both is
// fine, and a branch's deletes only bind the operations checked after it.
func checkWriteOverlap(ops []*pb.RequestOp) ([]interval, map[string]struct{}, error) {
	var dels []interval
	for _, op := range ops {
		if v, ok := op.Request.(*pb.RequestOp_RequestDeleteRange); ok {
			dels = append(dels, interval{key: v.RequestDeleteRange.Key, end: normEnd(v.RequestDeleteRange.RangeEnd)})
		}
	}
	puts := make(map[string]struct{})
	covered := func(k string) bool {
		for _, iv := range dels {
			if iv.contains([]byte(k)) {
				return true
			}
		}
		return false
	}
	for _, op := range ops {
		v, ok := op.Request.(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		dThen, pThen, err := checkWriteOverlap(v.RequestTxn.Success)
		if err != nil {
			return nil, nil, err
		}
		dElse, pElse, err := checkWriteOverlap(v.RequestTxn.Failure)
		if err != nil {
			return nil, nil, err
		}
		for k := range pThen {
			if _, dup := puts[k]; dup || covered(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range pElse {
			_, dup := puts[k]
			_, inThen := pThen[k]
			if (dup && !inThen) || covered(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(append(dels, dThen...), dElse...)
	}
	for _, op := range ops {
		v, ok := op.Request.(*pb.RequestOp_RequestPut)
		if !ok {
			continue
		}
		k := string(v.RequestPut.Key)
		if _, dup := puts[k]; dup || covered(k) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return dels, puts, nil
}

// normEnd turns a request's range_end into interval form.
func normEnd(end []byte) []byte {
	switch {
	case len(end) == 0:
		return nil
	case len(end) == 1 && end[0] == 0:
		return []byte{}
	}
	return end
}
