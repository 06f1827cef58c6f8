package node

import (
	"testing"

	"github.com/hashicorp/raft"

	"github.com/etcdsql/etcdsql/cluster"
)

func gossiped(name, raftAddr, clusterID string, st cluster.State, role string) cluster.Member {
	return cluster.Member{Name: name, State: st, Meta: cluster.Meta{RaftAddr: raftAddr, ClusterID: clusterID, Role: role, Nonce: "nonce-" + name}}
}

// gossipedVoter is an alive voter; the one named "n4" is at 10.0.0.4:2380.
func gossipedVoter(name string) cluster.Member {
	return gossiped(name, "10.0.0."+name[1:]+":2380", "", cluster.StateAlive, cluster.RoleVoter)
}

// formationCase is one row of TestDecideFormation.
type formationCase struct {
	name     string
	members  []cluster.Member
	expect   int
	nonvoter bool
	ok, join bool
	servers  []string
	seen     int
	bad      bool
}

// decideFormationCases are the rows of TestDecideFormation, as seen from
// self.
func decideFormationCases(self cluster.Member) []formationCase {
	return []formationCase{
		{name: "alone, expecting three", members: []cluster.Member{self}, expect: 3, seen: 1},
		{name: "two of three", members: []cluster.Member{self, gossipedVoter("n1")}, expect: 3, seen: 2},
		{name: "three of three", members: []cluster.Member{gossipedVoter("n3"), self, gossipedVoter("n1")}, expect: 3, ok: true, servers: []string{"n1", "n2", "n3"}},
		{name: "more than expected form together", members: []cluster.Member{gossipedVoter("n1"), gossipedVoter("n3"), gossipedVoter("n4"), self}, expect: 3, ok: true, servers: []string{"n1", "n2", "n3", "n4"}},
		{name: "failed members do not count", members: []cluster.Member{self, gossipedVoter("n1"), gossiped("n3", "10.0.0.3:2380", "", cluster.StateFailed, cluster.RoleVoter)}, expect: 3, seen: 2},
		{name: "non-voters do not count", members: []cluster.Member{self, gossipedVoter("n1"), gossiped("n3", "10.0.0.3:2380", "", cluster.StateAlive, cluster.RoleNonvoter)}, expect: 3, seen: 2},
		{name: "members without a raft address do not count", members: []cluster.Member{self, gossipedVoter("n1"), gossiped("n3", "", "", cluster.StateAlive, cluster.RoleVoter)}, expect: 3, seen: 2},
		{name: "a formed cluster is joined", members: []cluster.Member{self, gossiped("n1", "10.0.0.1:2380", "2a", cluster.StateAlive, cluster.RoleVoter)}, expect: 3, ok: true, join: true},
		{name: "a non-voter never forms", members: []cluster.Member{self, gossipedVoter("n1"), gossipedVoter("n3")}, expect: 3, nonvoter: true, seen: 3},
		{name: "no expectation: wait to be added", members: []cluster.Member{self, gossipedVoter("n1")}, expect: 0, seen: 2},
		{name: "a bad cluster id", members: []cluster.Member{self, gossiped("n1", "10.0.0.1:2380", "zz", cluster.StateAlive, cluster.RoleVoter)}, expect: 3, bad: true},
	}
}

func TestDecideFormation(t *testing.T) {
	self := gossiped("n2", "10.0.0.2:2380", "", cluster.StateAlive, cluster.RoleVoter)
	for _, tc := range decideFormationCases(self) {
		t.Run(tc.name, func(t *testing.T) {
			f, ok, seen, err := decideFormation(self, tc.members, tc.expect, tc.nonvoter)
			if (err != nil) != tc.bad || ok != tc.ok || f.join != tc.join {
				t.Fatalf("ok %v join %v err %v", ok, f.join, err)
			}
			if !ok && !tc.bad && seen != tc.seen {
				t.Fatalf("seen %d, want %d", seen, tc.seen)
			}
			if tc.join && f.clusterID != 0x2a {
				t.Fatalf("cluster id %x", f.clusterID)
			}
			var got []string
			for _, s := range f.servers {
				if s.Suffrage != raft.Voter || s.Address == "" {
					t.Fatalf("server %+v", s)
				}
				got = append(got, string(s.ID))
			}
			if len(got) != len(tc.servers) {
				t.Fatalf("servers %v, want %v", got, tc.servers)
			}
			for i := range got {
				if got[i] != tc.servers[i] {
					t.Fatalf("servers %v, want %v", got, tc.servers)
				}
			}
		})
	}
	// Every founder computes the same configuration and cluster ID, each
	// from its own view.
	all := []cluster.Member{gossipedVoter("n1"), self, gossipedVoter("n3")}
	var ids []uint64
	for _, me := range all {
		f, ok, _, err := decideFormation(me, all, 3, false)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", me.Name, ok, err)
		}
		ids = append(ids, f.clusterID)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] || ids[0] == 0 {
		t.Fatalf("founders disagree on the cluster id: %x", ids)
	}
	other := []cluster.Member{gossipedVoter("n1"), self, gossipedVoter("n3")}
	other[0].Meta.Nonce = "another start"
	if f, _, _, _ := decideFormation(self, other, 3, false); f.clusterID == ids[0] {
		t.Fatal("a new start of the founders gave the same cluster id")
	}
}
