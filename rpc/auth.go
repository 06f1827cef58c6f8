package rpc

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/etcdsql/etcdsql/fsm"
)

// authServer is etcd's auth service: users and roles (their writes are
// replicated; their reads are linearizable, after the read barrier), the
// auth switch, and authenticate. Authenticate checks the password with
// bcrypt on this member, after the read barrier, at most
// runtime.GOMAXPROCS at once (others wait, within their deadline, up to
// waitingPerSlot per slot; more get "too many requests"), and
// answers a token every member verifies for TokenTTL (see fsm's
// authtoken.go). No password is ever proposed.
type authServer struct {
	pb.UnimplementedAuthServer
	s *Server

	once    sync.Once
	slots   chan struct{} // one per bcrypt check in progress
	waiting atomic.Int64  // checks waiting for a slot
}

// waitingPerSlot bounds the password checks that may wait for a slot
// (per slot): beyond it Authenticate answers "too many requests" at once,
// so a flood of logins cannot queue up more work than a few seconds of
// bcrypt, and a client that logs in on time still gets through.
const waitingPerSlot = 32

// TokenTTL is how long a token from Authenticate is valid: etcd's default
// simple token TTL. Unlike etcd's, it is not extended by use; APISIX and
// clientv3 authenticate again well before it ends.
const TokenTTL = 5 * time.Minute

func (a *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := a.s.b.ReadBarrier(ctx); err != nil {
		return nil, togRPCError(err)
	}
	st := a.s.b.AuthStore()
	a.once.Do(func() { a.slots = make(chan struct{}, runtime.GOMAXPROCS(0)) })
	if a.waiting.Add(1) > int64(waitingPerSlot*cap(a.slots)) {
		a.waiting.Add(-1)
		return nil, rpctypes.ErrGRPCRequestTooManyRequests
	}
	waits := a.s.metrics.passwordWaits
	waits.Inc()
	select {
	case a.slots <- struct{}{}:
		waits.Dec()
		a.waiting.Add(-1)
	case <-ctx.Done():
		waits.Dec()
		a.waiting.Add(-1)
		return nil, togRPCError(ctx.Err())
	}
	hash, err := st.CheckPassword(r.Name, r.Password)
	<-a.slots
	if err != nil {
		return nil, togRPCError(err)
	}
	tok, err := st.IssueToken(r.Name, hash, time.Now().Add(TokenTTL))
	if err != nil {
		return nil, togRPCError(err)
	}
	resp := &pb.AuthenticateResponse{Header: &pb.ResponseHeader{}, Token: tok}
	a.s.fill(resp.Header)
	return resp, nil
}

// AuthStatus answers this member's auth switch and etcd's auth revision.
func (a *authServer) AuthStatus(ctx context.Context, _ *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	if err := a.s.b.ReadBarrier(ctx); err != nil {
		return nil, togRPCError(err)
	}
	on, rev := a.s.b.AuthStore().AuthStatus()
	resp := &pb.AuthStatusResponse{Header: &pb.ResponseHeader{}, Enabled: on, AuthRevision: rev}
	a.s.fill(resp.Header)
	return resp, nil
}

func (a *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthEnable: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthEnableResponse{Header: h}, nil
}

func (a *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthDisable: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthDisableResponse{Header: h}, nil
}

// write validates an auth write as the client sent it and replicates it
// (the backend hashes its password first); every auth write's response is
// a header alone.
func (a *authServer) write(ctx context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error) {
	if err := fsm.ValidateAuthRequest(r, a.s.limits()); err != nil {
		return nil, togRPCError(err)
	}
	h, err := a.s.b.AuthWrite(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	a.s.fill(h)
	return h, nil
}

// read waits for the read barrier, then reads the local auth store.
func authRead[T any](a *authServer, ctx context.Context, read func(AuthReads) (T, error), header func(T) *pb.ResponseHeader) (T, error) {
	var zero T
	if err := a.s.b.ReadBarrier(ctx); err != nil {
		return zero, togRPCError(err)
	}
	resp, err := read(a.s.b.AuthStore())
	if err != nil {
		return zero, togRPCError(err)
	}
	a.s.fill(header(resp))
	return resp, nil
}

func (a *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthUserAdd: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserAddResponse{Header: h}, nil
}

func (a *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthUserDelete: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserDeleteResponse{Header: h}, nil
}

func (a *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthUserChangePassword: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserChangePasswordResponse{Header: h}, nil
}

func (a *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthUserGrantRole: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserGrantRoleResponse{Header: h}, nil
}

func (a *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthUserRevokeRole: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthUserRevokeRoleResponse{Header: h}, nil
}

func (a *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthRoleAdd: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleAddResponse{Header: h}, nil
}

func (a *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthRoleDelete: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleDeleteResponse{Header: h}, nil
}

func (a *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthRoleGrantPermission: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleGrantPermissionResponse{Header: h}, nil
}

func (a *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	h, err := a.write(ctx, &pb.InternalRaftRequest{AuthRoleRevokePermission: r})
	if err != nil {
		return nil, err
	}
	return &pb.AuthRoleRevokePermissionResponse{Header: h}, nil
}

func (a *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return authRead(a, ctx, func(s AuthReads) (*pb.AuthUserGetResponse, error) { return s.UserGet(r.Name) },
		(*pb.AuthUserGetResponse).GetHeader)
}

func (a *authServer) UserList(ctx context.Context, _ *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return authRead(a, ctx, func(s AuthReads) (*pb.AuthUserListResponse, error) { return s.UserList(), nil },
		(*pb.AuthUserListResponse).GetHeader)
}

func (a *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return authRead(a, ctx, func(s AuthReads) (*pb.AuthRoleGetResponse, error) { return s.RoleGet(r.Role) },
		(*pb.AuthRoleGetResponse).GetHeader)
}

func (a *authServer) RoleList(ctx context.Context, _ *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return authRead(a, ctx, func(s AuthReads) (*pb.AuthRoleListResponse, error) { return s.RoleList(), nil },
		(*pb.AuthRoleListResponse).GetHeader)
}
