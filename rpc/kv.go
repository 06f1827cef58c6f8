package rpc

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

type kvServer struct {
	pb.UnimplementedKVServer
	s *Server
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := fsm.ValidateRange(r); err != nil {
		return nil, togRPCError(err)
	}
	resp, err := k.s.b.Range(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := fsm.ValidatePut(r, k.s.limits()); err != nil {
		return nil, togRPCError(err)
	}
	resp, err := k.s.b.Put(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := fsm.ValidateDeleteRange(r); err != nil {
		return nil, togRPCError(err)
	}
	resp, err := k.s.b.DeleteRange(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	k.s.fill(resp.Header)
	return resp, nil
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := fsm.ValidateTxn(r, k.s.limits()); err != nil {
		return nil, togRPCError(err)
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

// limits are the bounds the client port validates writes with; the peer
// port's service validates with the same (see NewPeerServer).
func (s *Server) limits() fsm.Limits { return fsm.Limits{MaxKeyBytes: s.cfg.MaxKeyBytes} }
