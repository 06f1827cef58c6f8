package difftest

import (
	"testing"

	"github.com/etcdsql/etcdsql/internal/testserver"
)

// The subject of the differential suite is an etcdsql member.
func init() {
	SubjectFactory = func(t testing.TB) string { return testserver.Start(t).URL }
}
