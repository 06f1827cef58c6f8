package node

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/etcdsql/etcdsql/cluster"
	"github.com/etcdsql/etcdsql/internal/release"
)

// releaseMember is an alive voter gossiping release rel ("" as the first
// release does).
func releaseMember(name, rel string) cluster.Member {
	return withMember(aliveMember(name), func(m *cluster.Member) { m.Meta.Version = rel })
}

func TestClusterVersion(t *testing.T) {
	for _, c := range []struct {
		name    string
		servers []raft.Server
		members []cluster.Member
		want    string
	}{
		{"alone", []raft.Server{raftVoter("n1")}, nil, release.Name},
		{"all current", threeVoters(), []cluster.Member{releaseMember("n2", release.Name), releaseMember("n3", release.Name)}, release.Name},
		{"one of the first release", threeVoters(), []cluster.Member{releaseMember("n2", release.Name), releaseMember("n3", "")}, release.First},
		{"a member gossip does not see", threeVoters(), []cluster.Member{releaseMember("n2", release.Name)}, release.First},
		{"an old non-voter", []raft.Server{raftVoter("n1"), raftNonvoter("n2")}, []cluster.Member{releaseMember("n2", "")}, release.First},
		{"an old member not in raft", []raft.Server{raftVoter("n1")}, []cluster.Member{releaseMember("n2", "")}, release.Name},
		{"a newer member", []raft.Server{raftVoter("n1"), raftVoter("n2")}, []cluster.Member{releaseMember("n2", "v9.0.0")}, release.Name},
	} {
		if got := clusterVersion("n1", c.servers, c.members); got != c.want {
			t.Errorf("%s: cluster version %q, want %q", c.name, got, c.want)
		}
	}
}

// A kind of entry no release of the cluster knows is refused with "not
// capable" before raft sees it: the log does not grow.
func TestProposeRefusesAnEntryTheClusterDoesNotKnow(t *testing.T) {
	n, ctx := startLone(t, loneConfig(t))
	last := n.raft.LastIndex()
	_, err := n.propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{}})
	if !errors.Is(err, ErrNotCapable) {
		t.Fatalf("propose(Alarm) = %v, want ErrNotCapable", err)
	}
	if got := n.raft.LastIndex(); got != last {
		t.Fatalf("raft log grew from %d to %d", last, got)
	}
	if _, err := n.propose(ctx, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}}); err != nil {
		t.Fatalf("a put after the refusal: %v", err)
	}
}

// A member is admitted only if it knows what the data and this leader's
// proposals need.
func TestAdmitRelease(t *testing.T) {
	n, _ := startLone(t, loneConfig(t))
	if need, ok := n.admitRelease(release.First); !ok || need != release.First {
		t.Fatalf("admitRelease(first) = %q, %v on a store of the first release", need, ok)
	}
	n.versions.proposed = "v0.2.0" // as if a v0.2.0 entry had been proposed
	if need, ok := n.admitRelease(release.First); ok || need != "v0.2.0" {
		t.Fatalf("admitRelease(first) = %q, %v after a v0.2.0 proposal; want refused, needs v0.2.0", need, ok)
	}
	if _, ok := n.admitRelease(release.Name); !ok {
		t.Fatalf("admitRelease(%s) refused", release.Name)
	}
}
