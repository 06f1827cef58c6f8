package haproxytest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine started by the tests outlives them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
