package rpc

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/metadata"

	"github.com/etcdsql/etcdsql/fsm"
)

// trailingBackend is a member whose store trails the leader's until a
// read barrier: its auth store is behind until ReadBarrier, then current.
type trailingBackend struct {
	storeBackend
	behind, current *fsm.Store
	caughtUp        atomic.Bool
	barriers        atomic.Int32
}

func (b *trailingBackend) AuthStore() AuthReads {
	if b.caughtUp.Load() {
		return b.current
	}
	return b.behind
}

func (b *trailingBackend) ReadBarrier(context.Context) error {
	b.barriers.Add(1)
	b.caughtUp.Store(true)
	return nil
}

// A member that trails the leader (just restarted: its store has not yet
// applied the enabling of authentication) decides on a call carrying a
// token only after catching up: the call goes on with the caller's
// identity (which a forwarded write carries to the leader) instead of
// unchecked and anonymous, which the leader refuses with "user name is
// empty". A call its store refuses is decided again after catching up
// too; a call the store lets through costs no barrier.
func TestAuthorizeTrailingMember(t *testing.T) {
	current := enabledStore(t)
	hash, err := current.CheckPassword("root", "pw")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := current.IssueToken("root", hash, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	withToken := metadata.NewIncomingContext(context.Background(), metadata.Pairs(mdToken, tok))
	empty, _ := fsm.New(fsm.DefaultConfig())
	cases := []struct {
		name     string
		behind   *fsm.Store
		ctx      context.Context
		barriers int32
		wantUser string
	}{
		{"authentication not applied yet", empty, withToken, 1, "root"},
		{"up to date", current, withToken, 0, "root"},
		{"no token, authentication disabled", empty, context.Background(), 0, ""},
	}
	for _, c := range cases {
		b := &trailingBackend{behind: c.behind, current: current}
		srv, err := NewServer(b, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		ctx, err := srv.authorizeClient(c.ctx, &pb.PutRequest{Key: []byte("k")})
		id, _ := ctx.Value(identityKey{}).(identity)
		if err != nil || id.user != c.wantUser || b.barriers.Load() != c.barriers {
			t.Errorf("%s: user %q, %v, %d barriers; want user %q, no error, %d barriers", c.name, id.user, err, b.barriers.Load(), c.wantUser, c.barriers)
		}
		srv.Close()
	}
}
