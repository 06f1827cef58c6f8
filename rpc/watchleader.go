package rpc

import (
	"context"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"
)

// A watch stream with etcd's require-leader metadata (clientv3's
// WithRequireLeader) lives only while its member knows a leader.

// leaderKnown reports whether this member knows a leader. A member in the
// middle of an election (as when a leader hands over before it stops, and
// its watch clients move here) learns the new leader within an election
// timeout: it waits that long (a third of LeaderLossTimeout) before saying
// no, which a clientv3 watch that requires a leader takes as final.
func (w *watchServer) leaderKnown(ctx context.Context) bool {
	if w.s.b.Healthy() == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, w.s.cfg.LeaderLossTimeout/3)
	defer cancel()
	return w.s.b.WaitLeader(ctx) == nil
}

// requiresLeader reports etcd's require-leader metadata (clientv3's
// WithRequireLeader): such a stream is refused, or ended, while the member
// has no leader, so the client moves to a member that has one.
func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	for _, v := range md.Get(rpctypes.MetadataRequireLeaderKey) {
		if v == rpctypes.MetadataHasLeader {
			return true
		}
	}
	return false
}

func leaderCheckInterval(timeout time.Duration) time.Duration {
	return max(timeout/4, 10*time.Millisecond)
}
