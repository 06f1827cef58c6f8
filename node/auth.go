package node

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"

	"github.com/etcdsql/etcdsql/fsm"
	"github.com/etcdsql/etcdsql/rpc"
)

// The auth store's writes: a user or role change is hashed here, on the
// member that took it from its client, so that no plain password is ever
// forwarded or replicated, and then runs on the leader like any write. An
// auth enable gets a fresh token signing key here.

// AuthWrite hashes an auth write's password (with the configured bcrypt
// cost) and replicates it through the leader, once the cluster version
// allows it.
func (n *Node) AuthWrite(ctx context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error) {
	// Refused here, before hashing or forwarding, while a member of an
	// older release remains (the leader checks again as it proposes).
	if err := n.capable(r); err != nil {
		return nil, err
	}
	hashed, err := fsm.HashPassword(r, n.cfg.bcryptCost())
	if err != nil {
		return nil, err
	}
	if r.AuthEnable != nil {
		// The signing key is made here and replicated with the entry;
		// the store installs it only if the entry enables.
		key, err := fsm.NewSigningKey()
		if err != nil {
			return nil, err
		}
		hashed = &pb.InternalRaftRequest{AuthEnable: r.AuthEnable, Authenticate: &pb.InternalAuthenticateRequest{SimpleToken: key}}
	}
	return viaLeader(n, ctx, func(ctx context.Context, b rpc.PeerBackend) (*pb.ResponseHeader, error) {
		return b.AuthWrite(ctx, hashed)
	})
}

// AuthStore is the local store's auth reads; callers wait for the read
// barrier first.
func (n *Node) AuthStore() rpc.AuthReads { return n.store }

// AuthChecks is the leader's auth state, which forwarded calls are
// checked against again (see rpc's authz.go).
func (l leaderSide) AuthChecks() rpc.AuthChecks { return l.n.store }

// AuthWrite proposes an auth write whose password is already hashed. It is
// validated again here: the local door validated it before hashing, the
// peer service after, and nothing else may be proposed this way.
func (l leaderSide) AuthWrite(ctx context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error) {
	if err := fsm.ValidateAuth(r, l.Limits()); err != nil {
		return nil, err
	}
	res, err := l.n.propose(ctx, r)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &pb.ResponseHeader{Revision: l.n.store.Rev()}, nil
}

// bcryptCost is the cost passwords are hashed with: BcryptCost, or etcd's
// default when it is 0.
func (c Config) bcryptCost() int {
	if c.BcryptCost == 0 {
		return bcrypt.DefaultCost
	}
	return c.BcryptCost
}
