package difftest

import (
	"os"
	"testing"
)

// TestDifferentialAuth runs AuthEnabledCases against a reference etcd and
// a subject of their own: enabling authentication would change every case
// of TestDifferential.
func TestDifferentialAuth(t *testing.T) {
	refURL := StartEtcd(t)
	var subjURL string
	if SubjectFactory != nil {
		subjURL = SubjectFactory(t)
	} else {
		subjURL = StartEtcd(t)
	}
	r := NewRunner(t, Target{Name: "reference", URL: refURL}, Target{Name: "subject", URL: subjURL})
	r.DumpDir = os.Getenv("DIFFTEST_DUMP")
	for _, cs := range AuthEnabledCases() {
		t.Run(cs.Name, func(t *testing.T) { r.Run(t, cs) })
	}
}
