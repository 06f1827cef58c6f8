package upgradetest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine started by the tests outlives
// them, and removes the binaries it built.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { Cleanup() }))
}
