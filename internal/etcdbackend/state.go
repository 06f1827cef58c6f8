package etcdbackend

import (
	"bytes"
	"slices"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// State is what a backend file holds that a key-value store needs back.
type State struct {
	// Rev is the current revision; CompactRev the revision compacted at
	// (0 when never compacted).
	Rev, CompactRev int64
	// ClusterID is the source cluster's ID, 0 when unknown (etcd 3.4's
	// backend does not hold it).
	ClusterID uint64
	// History is every version the backend holds, puts and tombstones, in
	// (mod revision, sub) order. A put's KeyValue is whole (create and mod
	// revision, version, lease); a tombstone's holds the key and its mod
	// revision.
	History []*mvccpb.Event
	// Leases is every lease, by ID.
	Leases []Lease
	// Auth is the auth store.
	Auth Auth
	// ConsistentIndex is the raft index the state was taken at (etcd's
	// consistent_index; `etcdctl snapshot restore` replaces it).
	ConsistentIndex uint64
}

// Auth is etcd's auth store: the switch, its revision (etcd's: 1 for a
// store that never changed), and the users (with bcrypt password hashes)
// and roles, by name.
type Auth struct {
	Enabled  bool
	Revision uint64
	Users    []*authpb.User
	Roles    []*authpb.Role
}

// KeysAt returns every key's version visible at revision rev (the key
// space a range at rev answers), sorted by key. rev must be at least
// CompactRev for the answer to be whole: compaction dropped what older
// reads would see.
func (st *State) KeysAt(rev int64) []*mvccpb.KeyValue {
	latest := make(map[string]*mvccpb.Event)
	for _, ev := range st.History {
		if ev.Kv.ModRevision > rev {
			break
		}
		latest[string(ev.Kv.Key)] = ev
	}
	out := make([]*mvccpb.KeyValue, 0, len(latest))
	for _, ev := range latest {
		if ev.Type == mvccpb.PUT {
			out = append(out, ev.Kv)
		}
	}
	slices.SortFunc(out, func(a, b *mvccpb.KeyValue) int { return bytes.Compare(a.Key, b.Key) })
	return out
}
