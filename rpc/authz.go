package rpc

import (
	"context"
	"errors"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/fsm"
)

// Enforcement, while authentication is enabled, as etcd 3.4 enforces it.
// A client names itself with a token in the gRPC metadata "token" (what
// clientv3 sends) or "authorization" (what etcd's gateway makes of an HTTP
// Authorization header). A call that needs a check resolves the token
// against this member's store, then checks the request: a range reads its
// keys; a put or delete writes them (and reads them with prev_kv); a
// transaction checks each compare as a read and each operation as above; a
// lease revoke, or a put attaching a lease, writes every key the lease
// holds; user and role management, auth enable and disable, compaction,
// defragment, hash and snapshot need the root role; reading a user needs root or being that
// user, reading a role root or having it. A watch create reads its range
// (watch.go asks watchAllowed). A call without a token is refused with
// "user name is empty", one with a bad token with "invalid auth token".
//
// A write forwarded to the leader carries the caller's user and the auth
// revision it was checked at in the peer call's metadata, and the leader
// checks it again against its own store before proposing: the peer port
// does for a member only what the client port did for its client. A
// request checked at an auth revision older than the leader's is refused
// with "revision of auth store is old", as etcd refuses an entry whose
// header is older than its auth store.

// identity is who a checked call runs as.
type identity struct {
	user string
	rev  uint64
}

type identityKey struct{}

// Metadata keys: the client's token, and the identity a forwarded call
// carries on the peer port.
const (
	mdToken         = "token"
	mdAuthorization = "authorization"
	mdPeerUser      = "etcdsql-auth-user"
	mdPeerRev       = "etcdsql-auth-revision"
)

// tokenFrom returns the token a client call carries, or "".
func tokenFrom(ctx context.Context) string {
	for _, k := range []string{mdToken, mdAuthorization} {
		if v := metadata.ValueFromIncomingContext(ctx, k); len(v) > 0 && v[0] != "" {
			return v[0]
		}
	}
	return ""
}

// check is the permission a request needs.
type check func(a AuthChecks, id identity) error

// checkFor returns the check req needs, or nil for a call etcd does not
// check.
func checkFor(req any) check {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return func(a AuthChecks, id identity) error { return a.CheckPerm(id.user, id.rev, r.Key, r.RangeEnd, false) }
	case *pb.PutRequest:
		return func(a AuthChecks, id identity) error { return checkPut(a, id, r) }
	case *pb.DeleteRangeRequest:
		return func(a AuthChecks, id identity) error { return checkDelete(a, id, r) }
	case *pb.TxnRequest:
		return func(a AuthChecks, id identity) error { return checkTxn(a, id, r) }
	case *pb.LeaseRevokeRequest:
		return func(a AuthChecks, id identity) error { return a.CheckLeaseWrite(id.user, id.rev, r.ID) }
	case *pb.LeaseTimeToLiveRequest: // etcd 3.4.26 and later (CVE-2023-32082)
		return func(a AuthChecks, id identity) error { return a.CheckLeaseRead(id.user, id.rev, r.ID) }
	case *pb.AuthUserGetRequest:
		return func(a AuthChecks, id identity) error {
			err := a.CheckAdmin(id.user, id.rev)
			if errors.Is(err, fsm.ErrPermissionDenied) && r.Name == id.user {
				return nil
			}
			return err
		}
	case *pb.AuthRoleGetRequest:
		return func(a AuthChecks, id identity) error { return a.CheckHasRole(id.user, id.rev, r.Role) }
	case *pb.InternalRaftRequest: // an auth write forwarded on the peer port
		return adminCheck
	case *pb.AuthEnableRequest, *pb.AuthUserAddRequest, *pb.AuthUserDeleteRequest, *pb.AuthUserChangePasswordRequest,
		*pb.AuthUserGrantRoleRequest, *pb.AuthUserRevokeRoleRequest, *pb.AuthRoleAddRequest,
		*pb.AuthRoleDeleteRequest, *pb.AuthRoleGrantPermissionRequest, *pb.AuthRoleRevokePermissionRequest,
		*pb.AuthUserListRequest, *pb.AuthRoleListRequest, *pb.AuthDisableRequest,
		*pb.DefragmentRequest, *pb.HashRequest, *pb.HashKVRequest, *pb.MoveLeaderRequest, *pb.SnapshotRequest,
		*pb.CompactionRequest, // etcd 3.4 lets anyone compact (see compatibility.md)
		*pb.MemberRemoveRequest,
		// The import service's writes (importsvc.go).
		*pb.ResponseHeader, *pb.LeaseTimeToLiveResponse, *pb.RangeResponse, *pb.WatchResponse, *pb.LeaseLeasesResponse:
		return adminCheck
	}
	return nil
}

func adminCheck(a AuthChecks, id identity) error { return a.CheckAdmin(id.user, id.rev) }

func checkPut(a AuthChecks, id identity, r *pb.PutRequest) error {
	if err := a.CheckPerm(id.user, id.rev, r.Key, nil, true); err != nil {
		return err
	}
	if r.PrevKv {
		if err := a.CheckPerm(id.user, id.rev, r.Key, nil, false); err != nil {
			return err
		}
	}
	if r.Lease != 0 {
		return a.CheckLeaseWrite(id.user, id.rev, r.Lease)
	}
	return nil
}

func checkDelete(a AuthChecks, id identity, r *pb.DeleteRangeRequest) error {
	if err := a.CheckPerm(id.user, id.rev, r.Key, r.RangeEnd, true); err != nil {
		return err
	}
	if r.PrevKv {
		return a.CheckPerm(id.user, id.rev, r.Key, r.RangeEnd, false)
	}
	return nil
}

// checkTxn checks every compare as a read, then every operation of both
// branches (nested transactions included), as etcd does.
func checkTxn(a AuthChecks, id identity, r *pb.TxnRequest) error {
	for _, c := range r.Compare {
		if err := a.CheckPerm(id.user, id.rev, c.Key, c.RangeEnd, false); err != nil {
			return err
		}
	}
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			var err error
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				err = a.CheckPerm(id.user, id.rev, v.RequestRange.Key, v.RequestRange.RangeEnd, false)
			case *pb.RequestOp_RequestPut:
				err = checkPut(a, id, v.RequestPut)
			case *pb.RequestOp_RequestDeleteRange:
				err = checkDelete(a, id, v.RequestDeleteRange)
			case *pb.RequestOp_RequestTxn:
				err = checkTxn(a, id, v.RequestTxn)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// clientIdentity resolves a client call's token while authentication is
// enabled: no token is the empty identity (refused by every check).
// Its expiry is checked against at.
func clientIdentity(ctx context.Context, a AuthChecks, at time.Time) (identity, error) {
	tok := tokenFrom(ctx)
	if tok == "" {
		return identity{}, nil
	}
	user, rev, err := a.CheckToken(tok, at)
	return identity{user: user, rev: rev}, err
}

// authorizeClient checks a client call; the identity travels on in ctx
// for a write the member forwards.
func (s *Server) authorizeClient(ctx context.Context, req any) (context.Context, error) {
	return s.authorizeClientAt(ctx, req, time.Now())
}

// authorizeClientAt is authorizeClient with the token's expiry checked
// against at.
//
// A member decides on its own store, which may trail the leader's (a
// member just restarted applies nothing until the leader tells it what is
// committed). When that store cannot vouch for the call (authentication
// looks disabled although the call carries a token, or the check refuses
// it), the member first applies everything committed before the call (the
// read barrier) and decides again; if the barrier fails, its first
// decision stands. A call that passes, or carries no token while
// authentication is disabled, costs nothing more.
func (s *Server) authorizeClientAt(ctx context.Context, req any, at time.Time) (context.Context, error) {
	a := s.b.AuthStore()
	if !a.AuthEnabled() && tokenFrom(ctx) == "" {
		return ctx, nil
	}
	c := checkFor(req)
	if c == nil {
		return ctx, nil
	}
	// A request etcd refuses as malformed gets that error, whoever asks,
	// and a malformed one costs no permission walk.
	if err := validateRequest(req, s.limits()); err != nil {
		return ctx, togRPCError(err)
	}
	checked, err := decide(ctx, a, c, at)
	if checked != nil {
		return checked, nil
	}
	if s.b.ReadBarrier(ctx) != nil {
		return ctx, err
	}
	if checked, err = decide(ctx, s.b.AuthStore(), c, at); checked != nil {
		return checked, nil
	}
	return ctx, err
}

// decide checks a call against the member's store as it is: the context
// to go on with, or nil and why not. A call let through unchecked
// (authentication disabled) returns nil and no error: the store cannot
// vouch that it is disabled.
func decide(ctx context.Context, a AuthChecks, c check, at time.Time) (context.Context, error) {
	if !a.AuthEnabled() {
		return nil, nil
	}
	id, err := clientIdentity(ctx, a, at)
	if err == nil {
		err = c(a, id)
	}
	if err != nil {
		return nil, togRPCError(err)
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// authUnary is the client port's unary interceptor. A read is checked before it runs, against this member's auth state,
// and again after it ran if that state changed meanwhile: a linearizable
// read first waits until the member has applied everything committed
// before it, so a member that lagged may have applied a revoke (or auth
// enable) that the first check did not see, as etcd refuses a read whose
// auth revision moved while it ran.
func (s *Server) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	a := s.b.AuthStore()
	wasOn, before := a.AuthStatus()
	ctx, err := s.authorizeClient(ctx, req)
	if err != nil {
		return nil, err
	}
	resp, err := h(ctx, req)
	if err != nil || !isRead(req) {
		return resp, err
	}
	if on, after := a.AuthStatus(); on != wasOn || after != before {
		if _, err := s.authorizeClient(ctx, req); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// isRead reports whether req only reads keys.
func isRead(req any) bool {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return true
	case *pb.TxnRequest:
		return fsm.IsTxnReadOnly(r)
	}
	return false
}

// authStream is the client port's stream interceptor: a snapshot needs
// the root role (a watch is checked per create, by watchAllowed).
func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod == "/etcdserverpb.Maintenance/Snapshot" {
		if _, err := s.authorizeClient(ss.Context(), &pb.SnapshotRequest{}); err != nil {
			return err
		}
	}
	return h(srv, ss)
}

// watchAllowed checks a watch create on a stream; any failure (no token,
// bad token, no permission) refuses it as etcd does, with permission
// denied. A stream's token is checked as of the stream's first allowed
// create (*authAt, set here): a clientv3 stream lives on with the token it
// was opened with, and its later creates are not refused once that token
// has aged past its TTL; a changed password or a deleted user still
// refuses them, and permissions are those of now.
func (s *Server) watchAllowed(ctx context.Context, key, end []byte, authAt *time.Time) bool {
	at := *authAt
	if at.IsZero() {
		at = time.Now()
	}
	_, err := s.authorizeClientAt(ctx, &pb.RangeRequest{Key: key, RangeEnd: end}, at)
	if err == nil && authAt.IsZero() && s.b.AuthStore().AuthEnabled() && tokenFrom(ctx) != "" {
		*authAt = at
	}
	return err == nil
}

// errWatchDenied is the cancel reason of a refused watch create.
var errWatchDenied = rpctypes.ErrGRPCPermissionDenied.Error()

// peerOutgoing adds the caller's identity, if a check resolved one, to a
// peer call's metadata.
func peerOutgoing(ctx context.Context) context.Context {
	id, ok := ctx.Value(identityKey{}).(identity)
	if !ok {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, mdPeerUser, id.user, mdPeerRev, strconv.FormatUint(id.rev, 10))
}

// PeerAuth is implemented by a PeerBackend that checks forwarded calls
// against its store's auth state (the leader's side does).
type PeerAuth interface {
	AuthChecks() AuthChecks
}

// authorizePeer checks a forwarded call with the identity its metadata
// carries; a call without one is checked as a client call without token.
func authorizePeer(srv any, ctx context.Context, req any) error {
	p, ok := srv.(PeerAuth)
	if !ok {
		return nil
	}
	c := checkFor(req)
	if c == nil {
		return nil
	}
	a := p.AuthChecks()
	md, _ := metadata.FromIncomingContext(ctx)
	var id identity
	if u, r := md.Get(mdPeerUser), md.Get(mdPeerRev); len(u) == 1 && len(r) == 1 {
		rev, err := strconv.ParseUint(r[0], 10, 64)
		if err != nil {
			return fsm.ErrInvalidAuthToken
		}
		id = identity{user: u[0], rev: rev}
		// The follower checked at an auth state this member may not have
		// applied yet (auth just enabled, a grant or revoke): apply it
		// first, so the check here is never against an older state.
		wctx, cancel := context.WithTimeout(ctx, peerAuthWait)
		err = a.WaitAuthRevision(wctx, rev)
		cancel()
		if err != nil {
			return fsm.ErrAuthOldRevision
		}
	}
	if !a.AuthEnabled() {
		return nil
	}
	return c(a, id)
}

// peerAuthWait bounds how long the leader waits to apply the auth state a
// forwarded request was checked at; the entries are committed, so this is
// the time to apply them.
const peerAuthWait = 2 * time.Second

// validateRequest runs the checks the KV handlers run on req (they run
// them again: this is for the order of errors with authentication on).
func validateRequest(req any, l fsm.Limits) error {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return fsm.ValidateRange(r)
	case *pb.PutRequest:
		return fsm.ValidatePut(r, l)
	case *pb.DeleteRangeRequest:
		return fsm.ValidateDeleteRange(r)
	case *pb.TxnRequest:
		return fsm.ValidateTxn(r, l)
	}
	return nil
}
