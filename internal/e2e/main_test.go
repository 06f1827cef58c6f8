package e2e

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine started by the tests outlives them.
//
// Known leaks in node's shutdown are ignored until node stops them; remove
// each option with its fix:
//   - node's Close closes raft's NetworkTransport but does not call its
//     CloseStreams, so pooled outbound raft connections stay open after a
//     member stops, and each peer's handler for such a connection
//     (NetworkTransport.handleConn) blocks reading it for ever.
//   - Node.propose (raft.Apply(...).Error()) and leaderSide.ReadIndex
//     (raft.VerifyLeader().Error()) wait on a raft future with no other way
//     out; raft's apply and verify futures carry no shutdown channel, and a
//     future raft has not answered when it shuts down is never answered, so
//     a forwarded request being served when its member stops blocks its
//     peer-service handler for ever.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"),
		goleak.IgnoreAnyFunction("github.com/etcdsql/etcdsql/node.(*Node).propose"),
		goleak.IgnoreAnyFunction("github.com/etcdsql/etcdsql/node.leaderSide.ReadIndex"),
	)
}
