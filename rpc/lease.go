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
	s       *Server
	gateway bool // the HTTP gateway's server: see LeaseKeepAlive
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
// sending (so a gateway client gets one reply and the end of the body). A
// draining member ends a gRPC client's stream with "server stopped", which
// clientv3 reopens on another endpoint; a gateway client's ends by itself.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	var stop <-chan struct{}
	if !l.gateway {
		stop = l.s.stopStreams
	}
	reqs, recvErr := receive(ctx, stream.Recv)
	for {
		var req *pb.LeaseKeepAliveRequest
		select {
		case <-stop:
			return streamEnd(false)
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case req = <-reqs:
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

// receive runs recv in a goroutine, handing each message on until recv
// fails, then its error; the goroutine ends with the stream (ctx).
func receive[T any](ctx context.Context, recv func() (T, error)) (<-chan T, <-chan error) {
	out := make(chan T)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errc
}
