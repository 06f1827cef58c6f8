package upgradetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/etcdsql/etcdsql/internal/release"
)

// betweenMembers is the pause from one member's stop to the next one's
// (operations.md, "Upgrade runbook").
const betweenMembers = 11 * time.Second

// healthyWithin bounds the wait for the cluster to be healthy again after
// a member was replaced.
const healthyWithin = time.Minute

// step is one member replaced: stopped with SIGTERM, started as another
// binary on the same data dir and ports, and the cluster healthy again.
type step struct {
	name       string // "n2 v0.1.0→current"
	member     int
	leader     bool // the member led the cluster when it was stopped
	termBefore uint64
	termAfter  uint64
	begin      time.Time // SIGTERM sent
	stopped    time.Time // the old process exited
	serving    time.Time // the new one answered a linearizable read
	healthy    time.Time // every member healthy, all voters, one leader
	// clusterVersion is the oldest release the members run after the step,
	// which every member that has a cluster version reported.
	clusterVersion string
}

func (s step) String() string {
	role := "follower"
	if s.leader {
		role = "leader"
	}
	return fmt.Sprintf("%s (%s): exited %v after SIGTERM, the new binary served %v and the cluster was healthy %v after it; term %d→%d; cluster version %s",
		s.name, role, ms(s.stopped.Sub(s.begin)), ms(s.serving.Sub(s.begin)), ms(s.healthy.Sub(s.begin)), s.termBefore, s.termAfter, s.clusterVersion)
}

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

// rollTo replaces every member that does not run bin with bin, one at a
// time: followers first, the leader last, waiting for the cluster to be
// healthy before each step and after the last.
func rollTo(t *testing.T, c *Cluster, bin Binary) []step {
	t.Helper()
	var steps []step
	for range c.Members {
		v, err := c.WaitHealthy(healthyWithin)
		if err != nil {
			t.Fatalf("before replacing a member by %s: %v", bin.Release, err)
		}
		i := nextToReplace(c, bin, v.Leader)
		if i < 0 {
			break
		}
		if len(steps) > 0 {
			// The runbook's pause between two members: APISIX, listing
			// the members, keeps a member it saw fail out for 10 s.
			time.Sleep(time.Until(steps[len(steps)-1].stopped.Add(betweenMembers)))
		}
		steps = append(steps, replaceOne(t, c, i, bin, v))
	}
	return steps
}

// nextToReplace picks a member not yet running bin, a follower if any is
// left, or -1 when every member runs bin.
func nextToReplace(c *Cluster, bin Binary, leader int) int {
	pick := -1
	for i, m := range c.Members {
		if m.Running.Path == bin.Path {
			continue
		}
		if i != leader {
			return i
		}
		pick = i
	}
	return pick
}

func replaceOne(t *testing.T, c *Cluster, i int, bin Binary, v View) step {
	t.Helper()
	m := c.Members[i]
	s := step{name: fmt.Sprintf("%s %s→%s", m.Name, m.Running.Release, bin.Release), member: i,
		leader: i == v.Leader, termBefore: v.Term, begin: time.Now()}
	if err := c.Stop(i); err != nil {
		t.Errorf("%s: %v\nits log ends:\n%s", s.name, err, c.LogTail(i, 4000))
	}
	s.stopped = time.Now()
	if err := c.Start(i, bin); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	if err := WaitServing(m.URL, healthyWithin); err != nil {
		t.Fatalf("%s: %v\nits log ends:\n%s", s.name, err, c.LogTail(i, 6000))
	}
	s.serving = time.Now()
	if err := c.WaitStarted(i, healthyWithin); err != nil {
		t.Fatalf("%s: %v\nits log ends:\n%s", s.name, err, c.LogTail(i, 6000))
	}
	after, err := c.WaitHealthy(healthyWithin)
	if err != nil {
		t.Fatalf("%s: %v\nits log ends:\n%s", s.name, err, c.LogTail(i, 6000))
	}
	s.healthy, s.termAfter = time.Now(), after.Term
	s.clusterVersion = checkClusterVersion(t, c, s.name)
	if s.leader && after.Leader == i {
		t.Errorf("%s: the stopped leader leads again; no hand-over was exercised", s.name)
	}
	t.Logf("step %s", s)
	return s
}

// during names the step running at time at ("" between steps).
func during(steps []step, at time.Time) string {
	for _, s := range steps {
		if !at.Before(s.begin) && !at.After(s.healthy) {
			return s.name
		}
	}
	return "between steps"
}

// firstRelease gossips no release and has no cluster version of its own.
const firstRelease = "v0.1.0"

// checkClusterVersion waits until every member that has a cluster version
// reports the oldest release the members run: this release once all run it,
// v0.1.0 again as soon as one runs v0.1.0. It returns that release.
func checkClusterVersion(t *testing.T, c *Cluster, stepName string) string {
	t.Helper()
	want := c.Members[0].Running.Release
	for _, m := range c.Members {
		if release.Compare(m.Running.Release, want) < 0 {
			want = m.Running.Release
		}
	}
	for _, m := range c.Members {
		if m.Running.Release == firstRelease {
			continue
		}
		var got string
		var err error
		for deadline := time.Now().Add(healthyWithin); time.Now().Before(deadline); time.Sleep(pollEvery) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			got, err = ClusterVersion(ctx, m.URL)
			cancel()
			if got == want {
				break
			}
		}
		if got != want {
			t.Errorf("after %s: %s (%s) reports cluster version %q (%v), want %q", stepName, m.Name, m.Running.Release, got, err, want)
		}
	}
	return want
}
