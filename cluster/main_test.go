package cluster

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine started by the tests outlives them.
//
// memberlist's Shutdown stops its probe ticker but does not wait for a probe
// already in flight: probeNode keeps waiting on its ack channel until the
// probe's own timer (one probe interval) fires, then returns. Nothing can
// stop or wait for it earlier, so that one function is ignored; every other
// memberlist goroutine (listeners, gossip and push-pull tickers) is still
// checked, so a Cluster that is never closed still fails the run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"),
	)
}
