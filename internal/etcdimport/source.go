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

// EtcdSource reads a live etcd through clientv3. Keys keeps an index of
// the key space between calls: one run's goroutine only.
type EtcdSource struct {
	C *clientv3.Client

	index    []indexEntry
	indexRev int64
}

// allKeys is the whole key space as etcd's clients name it (from "\x00").
var allKeys = []clientv3.OpOption{clientv3.WithFromKey()}

const keyZero = "\x00"

func (s *EtcdSource) Head(ctx context.Context) (uint64, int64, error) {
	resp, err := s.C.Get(ctx, keyZero, append(allKeys, clientv3.WithCountOnly())...)
	if err != nil {
		return 0, 0, err
	}
	return resp.Header.ClusterId, resp.Header.Revision, nil
}

func (s *EtcdSource) Leases(ctx context.Context) ([]*pb.LeaseTimeToLiveResponse, error) {
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

func (s *EtcdSource) Lease(ctx context.Context, id int64) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.C.TimeToLive(ctx, clientv3.LeaseID(id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{ID: id, TTL: -1}, nil
	}
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{ID: id, TTL: resp.TTL, GrantedTTL: resp.GrantedTTL}, nil
}

// Keys reads the key space at rev in (mod revision, key) order without
// asking etcd to sort it (etcd sorts a whole range before it applies a
// limit, so every page would read every key): the first call lists the
// keys alone, page by page in key order, and sorts that index; each call
// then reads its keys' values at rev in transactions of gets.
func (s *EtcdSource) Keys(ctx context.Context, rev, from int64, limit int) ([]*mvccpb.KeyValue, bool, error) {
	if s.index == nil || s.indexRev != rev {
		idx, err := s.listKeys(ctx, rev)
		if err != nil {
			return nil, false, err
		}
		s.index, s.indexRev = idx, rev
	}
	idx := s.index
	i, j := page(len(idx), func(i int) int64 { return idx[i].mod }, from, limit)
	var kvs []*mvccpb.KeyValue
	for k := i; k < j; k += getsPerTxn {
		var ops []clientv3.Op
		for _, e := range idx[k:min(k+getsPerTxn, j)] {
			ops = append(ops, clientv3.OpGet(e.key, clientv3.WithRev(rev)))
		}
		resp, err := s.C.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, false, err
		}
		for _, r := range resp.Responses {
			kvs = append(kvs, r.GetResponseRange().Kvs...)
		}
	}
	sortKVs(kvs)
	return kvs, j < len(idx), nil
}

// page returns the bounds [i, j) of a page of about limit keys, of n
// sorted by mod revision (mod(i)), from the first at or after revision
// from; a revision's keys are never split.
func page(n int, mod func(int) int64, from int64, limit int) (i, j int) {
	i = sort.Search(n, func(i int) bool { return mod(i) >= from })
	j = min(i+limit, n)
	for j < n && j > i && mod(j) == mod(j-1) {
		j++ // one revision's keys go together
	}
	return i, j
}

// sender returns a send on out that gives up (false) when ctx ends.
func sender(ctx context.Context, out chan<- Revision) func(Revision) bool {
	return func(r Revision) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
}

// getsPerTxn is how many gets one transaction carries (etcd's default
// --max-txn-ops is 128).
const getsPerTxn = 100

// indexEntry is one key of the key space and its mod revision.
type indexEntry struct {
	key string
	mod int64
}

// listKeys lists every key at rev, without values, in (mod revision,
// key) order.
func (s *EtcdSource) listKeys(ctx context.Context, rev int64) ([]indexEntry, error) {
	var idx []indexEntry
	start := keyZero
	for {
		resp, err := s.C.Get(ctx, start, append(append([]clientv3.OpOption{}, allKeys...), clientv3.WithRev(rev),
			clientv3.WithKeysOnly(), clientv3.WithLimit(10000))...)
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			idx = append(idx, indexEntry{key: string(kv.Key), mod: kv.ModRevision})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	sort.Slice(idx, func(i, j int) bool {
		if idx[i].mod != idx[j].mod {
			return idx[i].mod < idx[j].mod
		}
		return idx[i].key < idx[j].key
	})
	return idx, nil
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
func (s *EtcdSource) Watch(ctx context.Context, after int64) <-chan Revision {
	out := make(chan Revision)
	go func() {
		defer close(out)
		send := sender(ctx, out)
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
