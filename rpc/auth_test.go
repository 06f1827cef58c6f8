package rpc

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/etcdsql/etcdsql/fsm"
)

// enabledStore is a store with root (password "pw") and authentication
// enabled.
func enabledStore(t *testing.T) *fsm.Store {
	t.Helper()
	s, _ := fsm.New(fsm.DefaultConfig())
	key, _ := fsm.NewSigningKey()
	for i, r := range []*pb.InternalRaftRequest{
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "root", Password: "pw"}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}},
		{AuthEnable: &pb.AuthEnableRequest{}, Authenticate: &pb.InternalAuthenticateRequest{SimpleToken: key}},
	} {
		h, err := fsm.HashPassword(r, bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := fsm.Encode(h)
		if res := s.Apply(uint64(i+1), data); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	return s
}

// TestAuthenticateBounded: a password check waits for a free bcrypt slot
// within the caller's deadline; with one free, a right password gets a
// token the store verifies, a wrong one etcd's error.
func TestAuthenticateBounded(t *testing.T) {
	st := enabledStore(t)
	srv, l := storeServer(t, st)
	l.Close()
	a := &authServer{s: srv}
	a.once.Do(func() { a.slots = make(chan struct{}, 1) })
	a.slots <- struct{}{} // every slot busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := a.Authenticate(ctx, &pb.AuthenticateRequest{Name: "root", Password: "pw"})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("authenticate with every slot busy: %v", err)
	}
	a.waiting.Store(waitingPerSlot) // as many waiting as may
	if _, err := a.Authenticate(context.Background(), &pb.AuthenticateRequest{Name: "root", Password: "pw"}); !errors.Is(err, rpctypes.ErrGRPCRequestTooManyRequests) {
		t.Fatalf("authenticate with the queue full: %v", err)
	}
	a.waiting.Store(0)
	<-a.slots
	resp, err := a.Authenticate(context.Background(), &pb.AuthenticateRequest{Name: "root", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := st.CheckToken(resp.Token, time.Now().Add(TokenTTL-time.Second)); u != "root" || err != nil {
		t.Fatalf("token: %q, %v", u, err)
	}
	if _, _, err := st.CheckToken(resp.Token, time.Now().Add(TokenTTL+time.Second)); !errors.Is(err, fsm.ErrInvalidAuthToken) {
		t.Fatalf("token after its TTL: %v", err)
	}
	_, err = a.Authenticate(context.Background(), &pb.AuthenticateRequest{Name: "root", Password: "no"})
	if !errors.Is(err, rpctypes.ErrGRPCAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	if len(a.slots) != 0 {
		t.Fatal("a slot stayed taken")
	}
}

// A watch stream's token is checked as of the stream's first allowed
// create: a later create on the same stream is not refused because the
// token has since aged past its TTL, but is refused once the password
// changed.
func TestWatchStreamKeepsItsToken(t *testing.T) {
	st := enabledStore(t)
	srv, l := storeServer(t, st)
	l.Close()
	hash, err := st.CheckPassword("root", "pw")
	if err != nil {
		t.Fatal(err)
	}
	opened := time.Now().Add(-2 * TokenTTL)
	tok, err := st.IssueToken("root", hash, opened.Add(TokenTTL)) // expired a TTL ago
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdToken, tok))
	var fresh time.Time
	if srv.watchAllowed(ctx, []byte("/a"), nil, &fresh) {
		t.Fatal("a new stream was allowed with an expired token")
	}
	valid, err := st.IssueToken("root", hash, time.Now().Add(TokenTTL))
	if err != nil {
		t.Fatal(err)
	}
	var first time.Time
	if !srv.watchAllowed(metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdToken, valid)), []byte("/a"), nil, &first) || first.IsZero() {
		t.Fatalf("a stream's first create with a valid token: allowed, noted at %v", first)
	}
	at := opened
	if !srv.watchAllowed(ctx, []byte("/a"), nil, &at) {
		t.Fatal("a create on a stream whose token was accepted at its start was refused")
	}
	r, _ := fsm.HashPassword(&pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "root", Password: "new"}}, bcrypt.MinCost)
	data, _ := fsm.Encode(r)
	if res := st.Apply(st.AppliedIndex()+1, data); res.Err != nil {
		t.Fatal(res.Err)
	}
	if srv.watchAllowed(ctx, []byte("/a"), nil, &at) {
		t.Fatal("a create on the stream was allowed after the password changed")
	}
}

// applyAuthWrite applies one auth write to st at its next index.
func applyAuthWrite(t *testing.T, st *fsm.Store, r *pb.InternalRaftRequest) {
	t.Helper()
	h, err := fsm.HashPassword(r, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := fsm.Encode(h)
	if res := st.Apply(st.AppliedIndex()+1, data); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// A read whose permission was revoked while it ran (a lagging member
// applied the revoke during the read's barrier) is refused, not answered.
func TestReadRecheckedWhenAuthChangesMeanwhile(t *testing.T) {
	st := enabledStore(t)
	srv, l := storeServer(t, st)
	l.Close()
	perm := &authpb.Permission{PermType: authpb.READ, Key: []byte("/a/"), RangeEnd: []byte("/a0")}
	for _, r := range []*pb.InternalRaftRequest{
		{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "reader"}},
		{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "reader", Perm: perm}},
		{AuthUserAdd: &pb.AuthUserAddRequest{Name: "r", Password: "pw"}},
		{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "r", Role: "reader"}},
	} {
		applyAuthWrite(t, st, r)
	}
	hash, err := st.CheckPassword("r", "pw")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := st.IssueToken("r", hash, time.Now().Add(TokenTTL))
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdToken, tok))
	read := &pb.RangeRequest{Key: []byte("/a/x")}
	answer := &pb.RangeResponse{}
	quiet := func(context.Context, any) (any, error) { return answer, nil }
	if resp, err := srv.authUnary(ctx, read, nil, quiet); err != nil || resp != answer {
		t.Fatalf("read inside the permission: %v, %v", resp, err)
	}
	revokeMeanwhile := func(context.Context, any) (any, error) {
		applyAuthWrite(t, st, &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{Role: "reader", Key: []byte("/a/"), RangeEnd: []byte("/a0")}})
		return answer, nil
	}
	if resp, err := srv.authUnary(ctx, read, nil, revokeMeanwhile); !errors.Is(err, rpctypes.ErrGRPCPermissionDenied) {
		t.Fatalf("read whose permission was revoked while it ran: %v, %v", resp, err)
	}
}

// peerAuthOf is a peer backend whose auth checks are st's.
type peerAuthOf struct{ st *fsm.Store }

func (p peerAuthOf) AuthChecks() AuthChecks { return p.st }

// A forwarded request checked at an auth revision the leader has not
// applied yet waits for it: the leader's check is never against an older
// auth state than the follower's.
func TestPeerCheckWaitsForTheFollowersAuthState(t *testing.T) {
	st := enabledStore(t)
	_, rev := st.AuthStatus()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdPeerUser, "root", mdPeerRev, strconv.FormatUint(rev+1, 10)))
	data, _ := fsm.Encode(&pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "later"}})
	go func() {
		time.Sleep(50 * time.Millisecond)
		if res := st.Apply(st.AppliedIndex()+1, data); res.Err != nil {
			t.Error(res.Err)
		}
	}()
	start := time.Now()
	if err := authorizePeer(peerAuthOf{st}, ctx, &pb.PutRequest{Key: []byte("/k")}); err != nil {
		t.Fatalf("root's put checked at the next auth revision: %v", err)
	}
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("checked after %v, before the leader applied the follower's auth state", waited)
	}
	ahead := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdPeerUser, "root", mdPeerRev, strconv.FormatUint(rev+100, 10)))
	if err := authorizePeer(peerAuthOf{st}, ahead, &pb.PutRequest{Key: []byte("/k")}); !errors.Is(err, fsm.ErrAuthOldRevision) {
		t.Fatalf("a revision the leader never reaches: %v", err)
	}
}

// With authentication on, a malformed request gets etcd's error for it,
// not "permission denied", whoever sends it.
func TestMalformedRequestRefusedAsMalformed(t *testing.T) {
	st := enabledStore(t)
	srv, l := storeServer(t, st)
	l.Close()
	applyAuthWrite(t, st, &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "nobody", Password: "pw"}})
	hash, err := st.CheckPassword("nobody", "pw")
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := st.IssueToken("nobody", hash, time.Now().Add(TokenTTL))
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdToken, tok))
	if _, err := srv.authorizeClient(ctx, &pb.PutRequest{}); !errors.Is(err, rpctypes.ErrGRPCEmptyKey) {
		t.Fatalf("put without a key: %v, want %v", err, rpctypes.ErrGRPCEmptyKey)
	}
	if _, err := srv.authorizeClient(ctx, &pb.PutRequest{Key: []byte("/k")}); !errors.Is(err, rpctypes.ErrGRPCPermissionDenied) {
		t.Fatalf("put outside any permission: %v", err)
	}
}
