package difftest

import (
	"os"
	"testing"
	"time"
)

// SubjectFactory starts the server under test and returns its client URL
// (gRPC and HTTP gateway on one port). When nil, TestDifferential starts a
// second real etcd, which verifies the harness itself: etcd against etcd
// must show no difference.
var SubjectFactory func(t testing.TB) string

// TestDifferential runs every case of Cases, in order, against a reference
// etcd and the subject, as one subtest per case. Set DIFFTEST_DUMP to an
// existing directory to keep both transcripts of every case.
func TestDifferential(t *testing.T) {
	start := time.Now()
	refURL := StartEtcd(t)
	var subjURL string
	if SubjectFactory != nil {
		subjURL = SubjectFactory(t)
	} else {
		subjURL = StartEtcd(t)
	}
	t.Logf("reference %s, subject %s, started in %v", refURL, subjURL, time.Since(start).Round(time.Millisecond))

	r := NewRunner(t,
		Target{Name: "reference", URL: refURL},
		Target{Name: "subject", URL: subjURL})
	r.DumpDir = os.Getenv("DIFFTEST_DUMP")
	cases := Cases()
	seen := make(map[string]bool, len(cases))
	for _, cs := range cases {
		if seen[cs.Name] {
			t.Fatalf("duplicate case name %q", cs.Name)
		}
		seen[cs.Name] = true
		t.Run(cs.Name, func(t *testing.T) { r.Run(t, cs) })
	}
	t.Logf("%d cases in %v", len(cases), time.Since(start).Round(time.Millisecond))
}
