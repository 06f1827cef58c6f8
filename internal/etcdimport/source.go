package etcdimport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Source is what an import reads: a live etcd (EtcdSource), or anything
// else that yields the same (a snapshot file has the key space and the
// leases, and no events after them).
type Source interface {
	// Head returns the source cluster's ID and current revision.
	Head(ctx context.Context) (clusterID uint64, rev int64, err error)
	// Leases returns every lease with its granted and remaining TTL.
	Leases(ctx context.Context) ([]*pb.LeaseTimeToLiveResponse, error)
	// Lease returns one lease; TTL -1 when the source no longer has it.
	Lease(ctx context.Context, id int64) (*pb.LeaseTimeToLiveResponse, error)
	// Keys returns keys as they are at revision rev whose mod revision is
	// at least from, in (mod revision, key) order: about limit of them,
	// never part of a revision's keys. more reports whether any remain.
	Keys(ctx context.Context, rev, from int64, limit int) (kvs []*mvccpb.KeyValue, more bool, err error)
	// Watch delivers the source's revisions after after, each whole and
	// in order, until ctx ends or an error (ErrCompacted when the source
	// no longer has revision after+1) ends the channel.
	Watch(ctx context.Context, after int64) <-chan Revision
}

// Revision is one source revision's events, or the error that ended a
// watch; Head is the source's revision when it was sent.
type Revision struct {
	Rev    int64
	Events []*mvccpb.Event
	Head   int64
	Err    error
}

// EtcdSource reads a live etcd through clientv3.
type EtcdSource struct{ C *clientv3.Client }

// allKeys is the whole key space as etcd's clients name it (from "\x00").
var allKeys = []clientv3.OpOption{clientv3.WithFromKey()}

const keyZero = "\x00"

func (s EtcdSource) Head(ctx context.Context) (uint64, int64, error) {
	resp, err := s.C.Get(ctx, keyZero, append(allKeys, clientv3.WithCountOnly())...)
	if err != nil {
		return 0, 0, err
	}
	return resp.Header.ClusterId, resp.Header.Revision, nil
}

func (s EtcdSource) Leases(ctx context.Context) ([]*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.C.Leases(ctx)
	if err != nil {
		return nil, err
	}
	var out []*pb.LeaseTimeToLiveResponse
	for _, l := range resp.Leases {
		t, err := s.Lease(ctx, int64(l.ID))
		if err != nil {
			return nil, err
		}
		if t.TTL >= 0 {
			out = append(out, t)
		}
	}
	return out, nil
}

func (s EtcdSource) Lease(ctx context.Context, id int64) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.C.TimeToLive(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{ID: id, TTL: -1}, nil
	}
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{ID: id, TTL: resp.TTL, GrantedTTL: resp.GrantedTTL}, nil
}

// Keys asks etcd for the keys sorted by mod revision from from on; etcd
// sorts before it applies the limit, and orders keys of one revision
// arbitrarily, so the last revision of a page that has more is left for
// the next page (or read alone, when it fills the page).
func (s EtcdSource) Keys(ctx context.Context, rev, from int64, limit int) ([]*mvccpb.KeyValue, bool, error) {
	opts := append(append([]clientv3.OpOption{}, allKeys...), clientv3.WithRev(rev), clientv3.WithMinModRev(from),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortAscend), clientv3.WithLimit(int64(limit)))
	resp, err := s.C.Get(ctx, keyZero, opts...)
	if err != nil {
		return nil, false, err
	}
	kvs := resp.Kvs
	if resp.More && len(kvs) > 0 {
		last := kvs[len(kvs)-1].ModRevision
		i := sort.Search(len(kvs), func(i int) bool { return kvs[i].ModRevision >= last })
		if i == 0 {
			// One revision fills the page: read it whole.
			one, err := s.C.Get(ctx, keyZero, append(append([]clientv3.OpOption{}, allKeys...), clientv3.WithRev(rev),
				clientv3.WithMinModRev(last), clientv3.WithMaxModRev(last))...)
			if err != nil {
				return nil, false, err
			}
			kvs = one.Kvs
		} else {
			kvs = kvs[:i]
		}
	}
	sortKVs(kvs)
	return kvs, resp.More, nil
}

// sortKVs orders keys by (mod revision, key), the order an import entry
// takes them in.
func sortKVs(kvs []*mvccpb.KeyValue) {
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].ModRevision != kvs[j].ModRevision {
			return kvs[i].ModRevision < kvs[j].ModRevision
		}
		return bytes.Compare(kvs[i].Key, kvs[j].Key) < 0
	})
}

// Watch watches every key from after+1; etcd sends each revision's events
// together (a response holds whole revisions), in revision order.
func (s EtcdSource) Watch(ctx context.Context, after int64) <-chan Revision {
	out := make(chan Revision)
	go func() {
		defer close(out)
		send := func(r Revision) bool {
			select {
			case out <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		for resp := range s.C.Watch(wctx, keyZero, append(allKeys, clientv3.WithRev(after+1))...) {
			if resp.CompactRevision != 0 {
				send(Revision{Err: fmt.Errorf("%w: etcd is compacted up to revision %d, the import needs revision %d", ErrCompacted, resp.CompactRevision, after+1)})
				return
			}
			if err := resp.Err(); err != nil {
				send(Revision{Err: err})
				return
			}
			evs := resp.Events
			for len(evs) > 0 {
				rev := evs[0].Kv.ModRevision
				n := 1
				for n < len(evs) && evs[n].Kv.ModRevision == rev {
					n++
				}
				one := make([]*mvccpb.Event, n)
				for i, ev := range evs[:n] {
					one[i] = (*mvccpb.Event)(ev)
				}
				if !send(Revision{Rev: rev, Events: one, Head: resp.Header.Revision}) {
					return
				}
				evs = evs[n:]
			}
		}
		if ctx.Err() == nil {
			send(Revision{Err: errors.New("etcd closed the watch")})
		}
	}()
	return out
}
