package rpc

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// Errors a Backend returns besides fsm's; errors.go maps them to etcd's.
var (
	ErrNoLeader        = errors.New("no leader")
	ErrNotLeader       = errors.New("not leader")
	ErrTimeout         = errors.New("request timed out")
	ErrRequestTooLarge = errors.New("request is too large")
	ErrStopped         = errors.New("server stopped")
	// ErrUnavailable: this member cannot take writes now (its storage is
	// down); another member or a retry later may.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrStorageRefused: the database refuses an entry's data for a
	// reason no retry cures (a value too long for its column); writes are
	// refused until an operator fixes the schema. Only SinkHealthy
	// returns it: clients see ErrUnavailable.
	ErrStorageRefused = errors.New("writes are refused")
	// ErrMemberNotFound: no member has the ID asked for.
	ErrMemberNotFound = errors.New("member not found")
	// ErrLeaderChanged: leadership moved while the request was in flight;
	// it may or may not have been applied.
	ErrLeaderChanged = errors.New("leader changed")
	// ErrNotCapable: the request needs a release that not every member
	// runs yet (the cluster version is older); nothing was proposed.
	ErrNotCapable = errors.New("not capable")
)

// Writes are the calls that change state (and, for LeaseRenew and
// LeaseTimeToLive, read the lease clock only the leader keeps): the leader
// answers them, and a member that does not lead forwards them to it. Both
// doors take them: Backend for clients, PeerBackend for the members that
// forward. Implementations are safe for concurrent use.
type Writes interface {
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseRenew is one keepalive: it restarts the lease's TTL and returns it.
	LeaseRenew(ctx context.Context, id int64) (int64, error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	// AuthWrite replicates one auth write (r holds one of the user and
	// role changes and nothing else) and returns its header. A Backend
	// takes it as the client sent it and hashes its password before it
	// leaves the member; a PeerBackend takes it hashed (see
	// fsm.ValidateAuth).
	AuthWrite(ctx context.Context, r *pb.InternalRaftRequest) (*pb.ResponseHeader, error)
	// Import replicates one import entry (see importsvc.go).
	Import(ctx context.Context, e *fsm.ImportEntry) (*pb.ResponseHeader, error)
}

// AuthReads are the auth store's reads, answered from a member's own
// store (fsm.Store implements them); the caller waits for the read
// barrier first. Responses carry an empty header.
type AuthReads interface {
	UserGet(name string) (*pb.AuthUserGetResponse, error)
	UserList() *pb.AuthUserListResponse
	RoleGet(name string) (*pb.AuthRoleGetResponse, error)
	RoleList() *pb.AuthRoleListResponse
	AuthChecks
}

// AuthChecks are the checks authentication and permissions need, answered
// from a member's own store (fsm.Store implements them; see fsm's
// authtoken.go and authperm.go). Safe for concurrent use.
type AuthChecks interface {
	AuthEnabled() bool
	AuthStatus() (enabled bool, revision uint64)
	CheckPassword(name, password string) ([]byte, error)
	IssueToken(name string, hash []byte, expiry time.Time) (string, error)
	CheckToken(token string, now time.Time) (user string, revision uint64, err error)
	CheckPerm(user string, revision uint64, key, end []byte, write bool) error
	CheckAdmin(user string, revision uint64) error
	CheckHasRole(user string, revision uint64, role string) error
	CheckLeaseWrite(user string, revision uint64, id int64) error
	CheckLeaseRead(user string, revision uint64, id int64) error
	WaitAuthRevision(ctx context.Context, revision uint64) error
}

// Backend is what the services need from a member. Implementations are
// safe for concurrent use. Responses may share memory with the store: the
// services never modify them.
type Backend interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Writes
	LeaseLeases(ctx context.Context) (*pb.LeaseLeasesResponse, error)
	// AuthStore is this member's auth store, for reads after ReadBarrier.
	AuthStore() AuthReads

	// ReadBarrier returns once this member has applied every write
	// committed before the call (a linearizable read's wait).
	ReadBarrier(ctx context.Context) error
	// NewWatchStream opens the watchers of one client stream.
	NewWatchStream() *fsm.WatchStream
	// StoreSnapshot is a point-in-time copy of this member's store (what
	// it has applied), for Maintenance.Snapshot.
	StoreSnapshot() *fsm.Snapshot
	// Rev returns this member's current revision (what its store has
	// applied), for response headers.
	Rev() int64

	ClusterID() uint64
	MemberID() uint64
	Term() uint64
	// Healthy reports why this member should not get traffic, or nil.
	Healthy() error
	// WaitLeader waits until this member knows a leader; an error when
	// ctx ends first.
	WaitLeader(ctx context.Context) error
	// SinkHealthy reports why writes are refused (the database is down,
	// or refuses an entry: ErrStorageRefused), or nil. Reads and watches
	// are served either way.
	SinkHealthy() error
	Members(ctx context.Context) ([]*pb.Member, error)
	MemberRemove(ctx context.Context, id uint64) error
	Status(ctx context.Context) (*pb.StatusResponse, error)
	// ImportStatus reports the cluster's import mode, linearizably.
	ImportStatus(ctx context.Context) (fsm.ImportStatus, error)
}
