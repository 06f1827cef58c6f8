package rpc

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/fsm"
)

// PeerBackend is what a member answers to the other members over the
// internal service on the peer port: the leader's side of forwarded writes,
// lease calls and read index. Its methods never forward again, so a request
// crosses at most one hop: a member that is not the leader answers
// ErrNotLeader and the caller looks for the leader anew.
type PeerBackend interface {
	Writes
	// ReadIndex confirms leadership and returns the commit index a
	// linearizable read must wait for.
	ReadIndex(ctx context.Context) (uint64, error)
	MemberRemove(ctx context.Context, id uint64) error
	// Status reports this member's own progress (its applied index).
	Status(ctx context.Context) (*pb.StatusResponse, error)
}

const peerService = "etcdsql.v1.Peer"

// unaryMethod builds one method of the peer service from a typed handler.
func unaryMethod[Req any, Resp any](name string, call func(PeerBackend, context.Context, *Req) (*Resp, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			req := new(Req)
			if err := dec(req); err != nil {
				return nil, err
			}
			if err := authorizePeer(srv, ctx, req); err != nil {
				return nil, togRPCError(err)
			}
			resp, err := call(srv.(PeerBackend), ctx, req)
			if err != nil {
				return nil, togRPCError(err)
			}
			return resp, nil
		},
	}
}

var peerServiceDesc = grpc.ServiceDesc{
	ServiceName: peerService,
	HandlerType: (*PeerBackend)(nil),
	// An import's writes, as the client port's import service takes them
	// ("ImportBegin" and so on).
	Methods: append(importMethods(importDoor{
		prefix:    "Import",
		limits:    func(srv any) fsm.Limits { return peerLimits(srv.(PeerBackend)) },
		backend:   func(srv any) Importer { return peerImporter{srv.(PeerBackend)} },
		authorize: authorizePeer,
	}),
		unaryMethod("Put", func(b PeerBackend, ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
			if err := fsm.ValidatePut(r, peerLimits(b)); err != nil {
				return nil, err
			}
			return b.Put(ctx, r)
		}),
		unaryMethod("DeleteRange", func(b PeerBackend, ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
			if err := fsm.ValidateDeleteRange(r); err != nil {
				return nil, err
			}
			return b.DeleteRange(ctx, r)
		}),
		unaryMethod("Txn", func(b PeerBackend, ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
			if err := fsm.ValidateTxn(r, peerLimits(b)); err != nil {
				return nil, err
			}
			return b.Txn(ctx, r)
		}),
		unaryMethod("Compact", PeerBackend.Compact),
		unaryMethod("LeaseGrant", func(b PeerBackend, ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
			if err := fsm.ValidateLeaseGrant(r); err != nil {
				return nil, err
			}
			return b.LeaseGrant(ctx, r)
		}),
		unaryMethod("LeaseRevoke", PeerBackend.LeaseRevoke),
		unaryMethod("LeaseRenew", func(b PeerBackend, ctx context.Context, r *pb.LeaseKeepAliveRequest) (*pb.LeaseKeepAliveResponse, error) {
			ttl, err := b.LeaseRenew(ctx, r.ID)
			if err != nil {
				return nil, err
			}
			return &pb.LeaseKeepAliveResponse{ID: r.ID, TTL: ttl}, nil
		}),
		unaryMethod("LeaseTimeToLive", PeerBackend.LeaseTimeToLive),
		unaryMethod("AuthWrite", func(b PeerBackend, ctx context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error) {
			if err := fsm.ValidateAuth(r, peerLimits(b)); err != nil {
				return nil, err
			}
			return b.AuthWrite(ctx, r)
		}),
		unaryMethod("ReadIndex", func(b PeerBackend, ctx context.Context, _ *pb.StatusRequest) (*pb.ResponseHeader, error) {
			idx, err := b.ReadIndex(ctx)
			if err != nil {
				return nil, err
			}
			return &pb.ResponseHeader{Revision: int64(idx)}, nil
		}),
		unaryMethod("MemberRemove", func(b PeerBackend, ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
			return &pb.MemberRemoveResponse{}, b.MemberRemove(ctx, r.ID)
		}),
		unaryMethod("Status", func(b PeerBackend, ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
			return b.Status(ctx)
		}),
	),
	Metadata: "etcdsql/peer",
}

// PeerLimits is implemented by a PeerBackend whose writes are bounded. The
// peer service validates every request it would propose (puts, deletes,
// transactions, lease grants, auth writes) with fsm's Validate functions and these
// limits, which must be the client port's, before it calls the backend: a
// member cannot propose what a client could not. A backend without it is
// validated with fsm.Limits{}.
type PeerLimits interface {
	Limits() fsm.Limits
}

func peerLimits(b PeerBackend) fsm.Limits {
	if l, ok := b.(PeerLimits); ok {
		return l.Limits()
	}
	return fsm.Limits{}
}

// NewPeerServer returns the gRPC server of the peer port's internal
// service; see PeerLimits for how it validates.
func NewPeerServer(b PeerBackend, opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.ForceServerCodecV2(newCodec()), grpc.NumStreamWorkers(streamWorkers))
	s := grpc.NewServer(opts...)
	s.RegisterService(&peerServiceDesc, b)
	return s
}

// PeerDialOptions are the options a connection to another member's peer
// service needs besides its transport.
func PeerDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newCodec()))}
}

// PeerClient calls another member's internal service. Errors come back as
// the Backend errors they were on the other side, so a forwarded call
// fails exactly as a local one would.
type PeerClient struct{ cc grpc.ClientConnInterface }

// NewPeerClient wraps a connection made with PeerDialOptions.
func NewPeerClient(cc grpc.ClientConnInterface) *PeerClient { return &PeerClient{cc: cc} }

func peerCall[Resp any](ctx context.Context, c *PeerClient, method string, req any) (*Resp, error) {
	resp := new(Resp)
	// gRPC fills in the peer only once the call has a stream on a
	// connection: without one, nothing of the request left this member.
	var p peer.Peer
	if err := c.cc.Invoke(peerOutgoing(ctx), "/"+peerService+"/"+method, req, resp, grpc.Peer(&p)); err != nil {
		return nil, fromGRPCError(err, p.Addr != nil)
	}
	return resp, nil
}

func (c *PeerClient) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return peerCall[pb.PutResponse](ctx, c, "Put", r)
}

func (c *PeerClient) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return peerCall[pb.DeleteRangeResponse](ctx, c, "DeleteRange", r)
}

func (c *PeerClient) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return peerCall[pb.TxnResponse](ctx, c, "Txn", r)
}

func (c *PeerClient) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return peerCall[pb.CompactionResponse](ctx, c, "Compact", r)
}

func (c *PeerClient) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return peerCall[pb.LeaseGrantResponse](ctx, c, "LeaseGrant", r)
}

func (c *PeerClient) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return peerCall[pb.LeaseRevokeResponse](ctx, c, "LeaseRevoke", r)
}

func (c *PeerClient) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	resp, err := peerCall[pb.LeaseKeepAliveResponse](ctx, c, "LeaseRenew", &pb.LeaseKeepAliveRequest{ID: id})
	if err != nil {
		return 0, err
	}
	return resp.TTL, nil
}

func (c *PeerClient) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return peerCall[pb.LeaseTimeToLiveResponse](ctx, c, "LeaseTimeToLive", r)
}

// AuthWrite forwards an auth write, its password hashed. A leader of a
// release without the method answers etcd's "not capable".
func (c *PeerClient) AuthWrite(ctx context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error) {
	h, err := peerCall[pb.ResponseHeader](ctx, c, "AuthWrite", r)
	if status.Code(err) == codes.Unimplemented {
		return nil, rpctypes.ErrGRPCNotCapable
	}
	return h, err
}

func (c *PeerClient) ReadIndex(ctx context.Context) (uint64, error) {
	resp, err := peerCall[pb.ResponseHeader](ctx, c, "ReadIndex", &pb.StatusRequest{})
	if err != nil {
		return 0, err
	}
	return uint64(resp.Revision), nil
}

func (c *PeerClient) MemberRemove(ctx context.Context, id uint64) error {
	_, err := peerCall[pb.MemberRemoveResponse](ctx, c, "MemberRemove", &pb.MemberRemoveRequest{ID: id})
	return err
}

func (c *PeerClient) Status(ctx context.Context) (*pb.StatusResponse, error) {
	return peerCall[pb.StatusResponse](ctx, c, "Status", &pb.StatusRequest{})
}

// ErrPeerUnreachable: a call to another member could not be sent (no
// connection could be made), so it did nothing there.
var ErrPeerUnreachable = errors.New("member unreachable")

// fromGRPCError turns an error etcd would return back into the Backend
// error it stands for. A call that never got a stream on a connection to
// its member (sent is false: the dial failed, or the connection closed
// before its handshake ended, as a member's stopping port does) is
// ErrPeerUnreachable: nothing was sent. One whose connection failed once it
// was sent may have been applied: ErrLeaderChanged, etcd's answer when a
// proposal's fate is unknown after leadership moved. Other errors stay
// gRPC status errors, which the services pass through unchanged.
func fromGRPCError(err error, sent bool) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, e := range grpcErrors {
		if g, _ := status.FromError(e.grpc); g.Code() == st.Code() && g.Message() == st.Message() {
			return e.err
		}
	}
	if st.Code() == codes.Unavailable {
		if !sent {
			return ErrPeerUnreachable
		}
		return ErrLeaderChanged
	}
	return err
}

// peerImporter is a PeerBackend's import writes (the peer service has no
// import status: a member reads its own store).
type peerImporter struct{ b PeerBackend }

func (p peerImporter) Import(ctx context.Context, e *fsm.ImportEntry) (*pb.ResponseHeader, error) {
	return p.b.Import(ctx, e)
}

func (p peerImporter) ImportStatus(context.Context) (fsm.ImportStatus, error) {
	return fsm.ImportStatus{}, ErrNotLeader
}

// Import forwards an import entry. A leader of a release without the
// method answers etcd's "not capable".
func (c *PeerClient) Import(ctx context.Context, e *fsm.ImportEntry) (*pb.ResponseHeader, error) {
	h, err := peerCall[pb.ResponseHeader](ctx, c, e.Kind.String(), e.Msg)
	if status.Code(err) == codes.Unimplemented {
		return nil, rpctypes.ErrGRPCNotCapable
	}
	return h, err
}
