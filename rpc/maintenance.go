package rpc

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "etcdserver: %s is not supported by etcdsql", what)
}

type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

func (m *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := m.s.b.Status(ctx)
	if err != nil {
		return nil, togRPCError(err)
	}
	m.s.fill(resp.Header)
	return resp, nil
}

// Alarm lists no alarms: etcdsql raises none (there is no space quota).
func (m *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{}}
	m.s.fill(resp.Header)
	return resp, nil
}

func (m *maintenanceServer) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return nil, unimplemented("defragment")
}

func (m *maintenanceServer) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return nil, unimplemented("hash")
}

func (m *maintenanceServer) HashKV(context.Context, *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	return nil, unimplemented("hashkv")
}

func (m *maintenanceServer) MoveLeader(context.Context, *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	return nil, unimplemented("move-leader")
}

func (m *maintenanceServer) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, unimplemented("downgrade")
}

type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

func (c *clusterServer) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	members, err := c.s.b.Members(ctx)
	if err != nil {
		return nil, togRPCError(err)
	}
	resp := &pb.MemberListResponse{Header: &pb.ResponseHeader{}, Members: members}
	c.s.fill(resp.Header)
	return resp, nil
}

func (c *clusterServer) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, unimplemented("member add (start a node with --join instead)")
}

// MemberRemove removes a member from the raft configuration; it answers
// with the members left, as etcd does.
func (c *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := c.s.b.MemberRemove(ctx, r.ID); err != nil {
		return nil, togRPCError(err)
	}
	members, err := c.s.b.Members(ctx)
	if err != nil {
		return nil, togRPCError(err)
	}
	resp := &pb.MemberRemoveResponse{Header: &pb.ResponseHeader{}, Members: members}
	c.s.fill(resp.Header)
	return resp, nil
}

func (c *clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, unimplemented("member update")
}

func (c *clusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, unimplemented("member promote")
}
