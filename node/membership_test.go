package node

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/cluster"
)

func TestPlanReconcile(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	voter := func(name string) raft.Server {
		return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(name + ":2380")}
	}
	nonvoter := func(name string) raft.Server {
		s := voter(name)
		s.Suffrage = raft.Nonvoter
		return s
	}
	alive := func(name string) cluster.Member {
		return gossiped(name, name+":2380", "2a", cluster.StateAlive, cluster.RoleVoter)
	}
	with := func(m cluster.Member, f func(*cluster.Member)) cluster.Member { f(&m); return m }
	three := []raft.Server{voter("n1"), voter("n2"), voter("n3")}
	for _, tc := range []struct {
		name        string
		servers     []raft.Server
		members     []cluster.Member
		evicted     string
		failedSince map[string]time.Time
		limit       int
		cleanup     time.Duration
		want        []stepKind
		wantFailed  []string // names in failedSince afterwards
	}{
		{name: "steady", servers: three, members: []cluster.Member{alive("n1"), alive("n2"), alive("n3")}, limit: 3},
		{name: "a new member is added", servers: three, members: []cluster.Member{alive("n1"), alive("n4")}, limit: 3, want: []stepKind{stepAdd}},
		{name: "another cluster's member is not", servers: three,
			members: []cluster.Member{with(alive("n4"), func(m *cluster.Member) { m.Meta.ClusterID = "99" })}, limit: 3},
		{name: "a member with no raft address is not", servers: three,
			members: []cluster.Member{with(alive("n4"), func(m *cluster.Member) { m.Meta.RaftAddr = "" })}, limit: 3},
		{name: "a leaving member is not", servers: three,
			members: []cluster.Member{with(alive("n4"), func(m *cluster.Member) { m.Meta.Leaving = true })}, limit: 3},
		{name: "an evicted member is not", servers: three, members: []cluster.Member{alive("n4")}, evicted: "n4", limit: 3},
		{name: "a moved member is re-added", servers: three,
			members: []cluster.Member{with(alive("n2"), func(m *cluster.Member) { m.Meta.RaftAddr = "elsewhere:2380" })}, limit: 3, want: []stepKind{stepMove}},
		{name: "a non-voter is promoted below the limit", servers: []raft.Server{voter("n1"), voter("n2"), nonvoter("n3")},
			members: []cluster.Member{alive("n3")}, limit: 3, want: []stepKind{stepPromote}},
		{name: "not at the limit", servers: append(three[:3:3], nonvoter("n4")), members: []cluster.Member{alive("n4")}, limit: 3},
		{name: "one promotion left", servers: []raft.Server{voter("n1"), voter("n2"), nonvoter("n3"), nonvoter("n4")},
			members: []cluster.Member{alive("n3"), alive("n4")}, limit: 3, want: []stepKind{stepPromote}},
		{name: "a non-voter by choice stays one", servers: []raft.Server{voter("n1"), nonvoter("n2")},
			members: []cluster.Member{with(alive("n2"), func(m *cluster.Member) { m.Meta.Role = cluster.RoleNonvoter })}, limit: 3},
		{name: "a member that left is removed", servers: three,
			members: []cluster.Member{with(alive("n2"), func(m *cluster.Member) { m.State = cluster.StateLeft })}, limit: 3, want: []stepKind{stepRemoveLeft}},
		{name: "one that left and is not in raft is forgotten", servers: three,
			members: []cluster.Member{with(alive("n5"), func(m *cluster.Member) { m.State = cluster.StateLeft })}, limit: 3, want: []stepKind{stepForget}},
		{name: "a failed member is reported once", servers: three,
			members: []cluster.Member{with(alive("n2"), func(m *cluster.Member) { m.State = cluster.StateFailed })}, limit: 3,
			want: []stepKind{stepReportFailed}, wantFailed: []string{"n2"}},
		{name: "still failed: nothing more without cleanup", servers: three,
			members:     []cluster.Member{with(alive("n2"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n2": now.Add(-time.Hour)}, limit: 3, wantFailed: []string{"n2"}},
		{name: "cleanup never goes below three voters", servers: three,
			members:     []cluster.Member{with(alive("n2"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n2": now.Add(-time.Hour)}, limit: 3, cleanup: time.Minute, wantFailed: []string{"n2"}},
		{name: "cleanup of a fourth voter", servers: append(three[:3:3], voter("n4")),
			members:     []cluster.Member{with(alive("n4"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n4": now.Add(-time.Hour)}, limit: 4, cleanup: time.Minute, want: []stepKind{stepRemoveFailed}, wantFailed: []string{"n4"}},
		{name: "cleanup of two of five stops at three", servers: append(three[:3:3], voter("n4"), voter("n5")),
			members: []cluster.Member{
				with(alive("n4"), func(m *cluster.Member) { m.State = cluster.StateFailed }),
				with(alive("n5"), func(m *cluster.Member) { m.State = cluster.StateFailed }),
			},
			failedSince: map[string]time.Time{"n4": now.Add(-time.Hour), "n5": now.Add(-time.Hour)}, limit: 5, cleanup: time.Minute,
			want: []stepKind{stepRemoveFailed, stepRemoveFailed}, wantFailed: []string{"n4", "n5"}},
		{name: "not failed long enough", servers: append(three[:3:3], voter("n4")),
			members:     []cluster.Member{with(alive("n4"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n4": now.Add(-time.Second)}, limit: 4, cleanup: time.Minute, wantFailed: []string{"n4"}},
		{name: "back alive: forgotten as failed", servers: three, members: []cluster.Member{alive("n2")},
			failedSince: map[string]time.Time{"n2": now.Add(-time.Hour)}, limit: 3},
		{name: "self is never planned for", servers: three,
			members: []cluster.Member{with(alive("n1"), func(m *cluster.Member) { m.State = cluster.StateLeft })}, limit: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failed := tc.failedSince
			if failed == nil {
				failed = map[string]time.Time{}
			}
			plan := planReconcile(reconcileInput{
				self: "n1", clusterID: 0x2a, servers: tc.servers, members: tc.members,
				evicted:     func(name string) bool { return name == tc.evicted },
				failedSince: failed, now: now, voterLimit: tc.limit, deadCleanup: tc.cleanup,
			})
			if len(plan) != len(tc.want) {
				t.Fatalf("plan %+v, want kinds %v", plan, tc.want)
			}
			for i, st := range plan {
				if st.kind != tc.want[i] {
					t.Fatalf("step %d: %v, want %v (plan %+v)", i, st.kind, tc.want[i], plan)
				}
			}
			if len(failed) != len(tc.wantFailed) {
				t.Fatalf("failed members %v, want %v", failed, tc.wantFailed)
			}
			for _, name := range tc.wantFailed {
				if _, ok := failed[name]; !ok {
					t.Fatalf("failed members %v, want %v", failed, tc.wantFailed)
				}
			}
		})
	}
}
