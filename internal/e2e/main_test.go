package e2e

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine started by the tests outlives them.
//
// Two known leaks in node's shutdown are ignored until node stops them;
// remove each option with its fix:
//   - node's Close closes raft's NetworkTransport but does not call its
//     CloseStreams, so pooled outbound raft connections stay open after a
//     member stops, and each peer's handler for such a connection
//     (NetworkTransport.handleConn) blocks reading it for ever.
//   - Node.propose waits on raft's ApplyFuture.Error() with no other way
//     out; raft never answers a future whose entry it dropped at shutdown
//     (apply futures carry no shutdown channel), so a forwarded write being
//     proposed when its member stops blocks its peer-service handler for
//     ever.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"),
		goleak.IgnoreAnyFunction("github.com/etcdsql/etcdsql/node.(*Node).propose"),
	)
}
