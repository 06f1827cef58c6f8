// Package leakcheck fails a test binary whose tests leave goroutines
// running (go.uber.org/goleak), with the one exception every package that
// runs gossip needs.
//
// memberlist's Shutdown stops its probe ticker but does not wait for a
// probe already in flight: probeNode keeps waiting on its ack channel
// until the probe's own timer (one probe interval) fires, then returns.
// Nothing can stop or wait for it earlier, so that one function is
// ignored; every other memberlist goroutine (listeners, gossip and
// push-pull tickers) is still checked, so a member that is never closed
// still fails the run.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs the tests and fails the run if any goroutine they
// started outlives them (a TestMain's whole body).
func VerifyTestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*Memberlist).probeNode"))
}
