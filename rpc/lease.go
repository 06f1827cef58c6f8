package rpc

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := fsm.ValidateLeaseGrant(r); err != nil {
		return nil, togRPCError(err)
	}
	resp, err := l.s.b.LeaseGrant(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	l.s.fill(resp.Header)
	return resp, nil
}

func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := l.s.b.LeaseRevoke(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	l.s.fill(resp.Header)
	return resp, nil
}

// LeaseTimeToLive answers TTL -1 for an unknown lease, as etcd does.
func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := l.s.b.LeaseTimeToLive(ctx, r)
	if errors.Is(err, fsm.ErrLeaseNotFound) {
		resp, err = &pb.LeaseTimeToLiveResponse{Header: &pb.ResponseHeader{}, ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, togRPCError(err)
	}
	l.s.fill(resp.Header)
	return resp, nil
}

func (l *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := l.s.b.LeaseLeases(ctx)
	if err != nil {
		return nil, togRPCError(err)
	}
	l.s.fill(resp.Header)
	return resp, nil
}

// LeaseKeepAlive answers each keepalive with the lease's TTL, or with no
// TTL for a lease that does not exist, and ends when the client stops
// sending (so a gateway client gets one reply and the end of the body).
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, err := l.s.b.LeaseRenew(ctx, req.ID)
		if errors.Is(err, fsm.ErrLeaseNotFound) {
			ttl, err = 0, nil
		}
		if err != nil {
			return togRPCError(err)
		}
		resp := &pb.LeaseKeepAliveResponse{Header: &pb.ResponseHeader{}, ID: req.ID, TTL: ttl}
		l.s.fill(resp.Header)
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
