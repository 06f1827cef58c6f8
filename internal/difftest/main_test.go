package difftest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a stream reader, client or etcd waiter goroutine
// outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
