package node

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/cluster"
)

// raftVoter is a voter named name at name:2380.
func raftVoter(name string) raft.Server {
	return raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(name + ":2380")}
}

// raftNonvoter is a non-voter named name at name:2380.
func raftNonvoter(name string) raft.Server {
	s := raftVoter(name)
	s.Suffrage = raft.Nonvoter
	return s
}

// aliveMember is an alive voter of cluster 0x2a as gossip sees it.
func aliveMember(name string) cluster.Member {
	return gossiped(name, name+":2380", "2a", cluster.StateAlive, cluster.RoleVoter)
}

// withMember returns m changed by f.
func withMember(m cluster.Member, f func(*cluster.Member)) cluster.Member { f(&m); return m }

// threeVoters is the configuration of voters n1, n2 and n3.
func threeVoters() []raft.Server {
	return []raft.Server{raftVoter("n1"), raftVoter("n2"), raftVoter("n3")}
}

// planCase is one row of TestPlanReconcile.
type planCase struct {
	name        string
	servers     []raft.Server
	members     []cluster.Member
	evicted     string
	failedSince map[string]time.Time
	limit       int
	cleanup     time.Duration
	want        []stepKind
	wantFailed  []string // names in failedSince afterwards
}

// planReconcileCases are the rows of TestPlanReconcile at the time now.
func planReconcileCases(now time.Time) []planCase {
	return []planCase{
		{name: "steady", servers: threeVoters(), members: []cluster.Member{aliveMember("n1"), aliveMember("n2"), aliveMember("n3")}, limit: 3},
		{name: "a new member is added", servers: threeVoters(), members: []cluster.Member{aliveMember("n1"), aliveMember("n4")}, limit: 3, want: []stepKind{stepAdd}},
		{name: "another cluster's member is not", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n4"), func(m *cluster.Member) { m.Meta.ClusterID = "99" })}, limit: 3},
		{name: "a member with no raft address is not", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n4"), func(m *cluster.Member) { m.Meta.RaftAddr = "" })}, limit: 3},
		{name: "a leaving member is not", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n4"), func(m *cluster.Member) { m.Meta.Leaving = true })}, limit: 3},
		{name: "an evicted member is not", servers: threeVoters(), members: []cluster.Member{aliveMember("n4")}, evicted: "n4", limit: 3},
		{name: "a moved member is re-added", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n2"), func(m *cluster.Member) { m.Meta.RaftAddr = "elsewhere:2380" })}, limit: 3, want: []stepKind{stepMove}},
		{name: "a non-voter is promoted below the limit", servers: []raft.Server{raftVoter("n1"), raftVoter("n2"), raftNonvoter("n3")},
			members: []cluster.Member{aliveMember("n3")}, limit: 3, want: []stepKind{stepPromote}},
		{name: "not at the limit", servers: append(threeVoters(), raftNonvoter("n4")), members: []cluster.Member{aliveMember("n4")}, limit: 3},
		{name: "one promotion left", servers: []raft.Server{raftVoter("n1"), raftVoter("n2"), raftNonvoter("n3"), raftNonvoter("n4")},
			members: []cluster.Member{aliveMember("n3"), aliveMember("n4")}, limit: 3, want: []stepKind{stepPromote}},
		{name: "a non-voter by choice stays one", servers: []raft.Server{raftVoter("n1"), raftNonvoter("n2")},
			members: []cluster.Member{withMember(aliveMember("n2"), func(m *cluster.Member) { m.Meta.Role = cluster.RoleNonvoter })}, limit: 3},
		{name: "a member that left is removed", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n2"), func(m *cluster.Member) { m.State = cluster.StateLeft })}, limit: 3, want: []stepKind{stepRemoveLeft}},
		{name: "one that left and is not in raft is forgotten", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n5"), func(m *cluster.Member) { m.State = cluster.StateLeft })}, limit: 3, want: []stepKind{stepForget}},
		{name: "a failed member is reported once", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n2"), func(m *cluster.Member) { m.State = cluster.StateFailed })}, limit: 3,
			want: []stepKind{stepReportFailed}, wantFailed: []string{"n2"}},
		{name: "still failed: nothing more without cleanup", servers: threeVoters(),
			members:     []cluster.Member{withMember(aliveMember("n2"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n2": now.Add(-time.Hour)}, limit: 3, wantFailed: []string{"n2"}},
		{name: "cleanup never goes below three voters", servers: threeVoters(),
			members:     []cluster.Member{withMember(aliveMember("n2"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n2": now.Add(-time.Hour)}, limit: 3, cleanup: time.Minute, wantFailed: []string{"n2"}},
		{name: "cleanup of a fourth voter", servers: append(threeVoters(), raftVoter("n4")),
			members:     []cluster.Member{withMember(aliveMember("n4"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n4": now.Add(-time.Hour)}, limit: 4, cleanup: time.Minute, want: []stepKind{stepRemoveFailed}, wantFailed: []string{"n4"}},
		{name: "cleanup of two of five stops at three", servers: append(threeVoters(), raftVoter("n4"), raftVoter("n5")),
			members: []cluster.Member{
				withMember(aliveMember("n4"), func(m *cluster.Member) { m.State = cluster.StateFailed }),
				withMember(aliveMember("n5"), func(m *cluster.Member) { m.State = cluster.StateFailed }),
			},
			failedSince: map[string]time.Time{"n4": now.Add(-time.Hour), "n5": now.Add(-time.Hour)}, limit: 5, cleanup: time.Minute,
			want: []stepKind{stepRemoveFailed, stepRemoveFailed}, wantFailed: []string{"n4", "n5"}},
		{name: "not failed long enough", servers: append(threeVoters(), raftVoter("n4")),
			members:     []cluster.Member{withMember(aliveMember("n4"), func(m *cluster.Member) { m.State = cluster.StateFailed })},
			failedSince: map[string]time.Time{"n4": now.Add(-time.Second)}, limit: 4, cleanup: time.Minute, wantFailed: []string{"n4"}},
		{name: "back alive: forgotten as failed", servers: threeVoters(), members: []cluster.Member{aliveMember("n2")},
			failedSince: map[string]time.Time{"n2": now.Add(-time.Hour)}, limit: 3},
		{name: "self is never planned for", servers: threeVoters(),
			members: []cluster.Member{withMember(aliveMember("n1"), func(m *cluster.Member) { m.State = cluster.StateLeft })}, limit: 3},
	}
}

func TestPlanReconcile(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range planReconcileCases(now) {
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
