package node

import "github.com/etcdsql/etcdsql/rpc"

// The errors a node returns are the ones its consumer, rpc.Backend,
// defines; these names keep node's code readable.
var (
	ErrNoLeader        = rpc.ErrNoLeader
	ErrNotLeader       = rpc.ErrNotLeader
	ErrTimeout         = rpc.ErrTimeout
	ErrRequestTooLarge = rpc.ErrRequestTooLarge
	ErrStopped         = rpc.ErrStopped
	ErrUnavailable     = rpc.ErrUnavailable
	ErrStorageRefused  = rpc.ErrStorageRefused
	ErrMemberNotFound  = rpc.ErrMemberNotFound
	ErrLeaderChanged   = rpc.ErrLeaderChanged
	ErrNotCapable      = rpc.ErrNotCapable
)
