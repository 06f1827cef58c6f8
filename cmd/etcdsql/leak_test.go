package main

import (
	"testing"

	"github.com/etcdsql/etcdsql/internal/leakcheck"
)

// TestMain fails the run if any goroutine started by the tests outlives them.
func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}
