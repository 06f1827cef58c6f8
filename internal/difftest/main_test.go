package difftest

import (
	"testing"

	"github.com/etcdsql/etcdsql/internal/leakcheck"
)

// TestMain fails the run if a stream reader, client or etcd waiter goroutine
// outlives the tests.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
