package etcdimport

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/etcdsql/etcdsql/internal/etcdbackend"
)

// SnapshotSource reads an etcd backend file (`etcdctl snapshot save`'s,
// read with etcdbackend.ReadFile): its leases, each with its whole TTL
// left (a snapshot holds no clock), and its key space at its revision.
// Watch replays the file's history since its compaction; no revision comes
// after the file's own, so it suits an import without Follow. One run's
// goroutine only.
type SnapshotSource struct {
	State *etcdbackend.State

	keys []*mvccpb.KeyValue // the key space at State.Rev, in (mod revision, key) order
}

// Head returns the file's revision, and its cluster ID: etcd 3.4's
// backend does not hold one, so an ID is derived from the file's state,
// the same for every run over the same file (an interrupted import
// resumes from it, and a different file is a different source).
func (s *SnapshotSource) Head(context.Context) (uint64, int64, error) {
	id := s.State.ClusterID
	if id == 0 {
		h := sha256.New()
		binary.Write(h, binary.BigEndian, []int64{s.State.Rev, s.State.CompactRev, int64(len(s.State.History)), int64(s.State.ConsistentIndex)})
		for _, ev := range s.State.History {
			h.Write(ev.Kv.Key)
		}
		id = binary.BigEndian.Uint64(h.Sum(nil)) | 1
	}
	return id, s.State.Rev, nil
}

func (s *SnapshotSource) Leases(ctx context.Context) ([]*pb.LeaseTimeToLiveResponse, error) {
	out := make([]*pb.LeaseTimeToLiveResponse, 0, len(s.State.Leases))
	for _, l := range s.State.Leases {
		out = append(out, &pb.LeaseTimeToLiveResponse{ID: l.ID, TTL: l.RemainingTTL, GrantedTTL: l.TTL})
	}
	return out, nil
}

func (s *SnapshotSource) Lease(_ context.Context, id int64) (*pb.LeaseTimeToLiveResponse, error) {
	for _, l := range s.State.Leases {
		if l.ID == id {
			return &pb.LeaseTimeToLiveResponse{ID: id, TTL: l.RemainingTTL, GrantedTTL: l.TTL}, nil
		}
	}
	return &pb.LeaseTimeToLiveResponse{ID: id, TTL: -1}, nil
}

// Keys pages through the key space at the file's revision, the only one
// it has whole.
func (s *SnapshotSource) Keys(_ context.Context, rev, from int64, limit int) ([]*mvccpb.KeyValue, bool, error) {
	if rev != s.State.Rev {
		return nil, false, fmt.Errorf("the snapshot is at revision %d, not %d", s.State.Rev, rev)
	}
	if s.keys == nil {
		s.keys = s.State.KeysAt(rev)
		sortKVs(s.keys)
	}
	kvs := s.keys
	i, j := page(len(kvs), func(i int) int64 { return kvs[i].ModRevision }, from, limit)
	return kvs[i:j], j < len(kvs), nil
}

// Watch delivers nothing: the key space is copied at the file's own
// revision (Head), and no revision follows it in a file.
func (s *SnapshotSource) Watch(ctx context.Context, _ int64) <-chan Revision {
	out := make(chan Revision)
	go func() {
		defer close(out)
		<-ctx.Done()
	}()
	return out
}
