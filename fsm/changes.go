package fsm

import (
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Change is one version of one key as the system of record stores it.
type Change struct {
	KV      *mvccpb.KeyValue // shared, read-only; a deletion has only Key and ModRevision
	Sub     int32            // position among the changes of its revision
	Deleted bool
}

// Changes is a consistent read of what the system of record needs after
// a given revision.
type Changes struct {
	// Changes holds every version with a revision in (after, UpTo], in
	// (revision, sub) order.
	Changes []Change
	// UpTo is the revision the read covers; Complete reports whether it is
	// the store's current revision (false when a bound cut the read short).
	UpTo     int64
	Complete bool
	// AppliedIndex is the raft index the store had applied at the read.
	AppliedIndex uint64
	CompactRev   int64
	// Leases is every lease, by ID, when the lease set changed since the
	// version the caller passed; nil otherwise. LeaseVersion is the
	// current version of the lease set.
	Leases       []LeaseInfo
	LeaseVersion uint64
	// Auth is every user and role when the auth store changed since the
	// version the caller passed; nil otherwise. AuthVersion is the
	// current version of the auth store.
	Auth        *AuthState
	AuthVersion uint64
	// Importing and ImportSource are the store's import mode and the
	// source cluster's ID (importing.go) at the read.
	Importing    bool
	ImportSource uint64
	ImportBase   int64
	// Wipes counts the import resets applied: the system of record wipes
	// its copy before anything else when its count differs.
	Wipes uint64
}

// ChangesSince reads the versions after revision after, with the state
// around them: at most maxRevs revisions, and no more revisions once their
// keys and values reach maxBytes (a read holds at least one whole
// revision), with the leases and the auth store when they changed since
// leaseVersion and authVersion. It fails with ErrCompacted when compaction has dropped
// revisions the caller has not seen. Safe for concurrent use.
func (s *Store) ChangesSince(after int64, maxRevs, maxBytes int, leaseVersion, authVersion uint64) (Changes, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c := Changes{UpTo: s.rev, Complete: true, AppliedIndex: s.applied.Load(), CompactRev: s.compactRev,
		LeaseVersion: s.leaseVersion, AuthVersion: s.authVersion, Importing: s.imp != nil, Wipes: s.wipes}
	if s.imp != nil {
		c.ImportSource, c.ImportBase = s.imp.source, s.imp.base
	}
	if authVersion != s.authVersion {
		a := s.authState()
		c.Auth = &a
	}
	if after+1 < s.compactRev {
		return c, ErrCompacted
	}
	h := s.history
	i := sort.Search(len(h), func(i int) bool { return h[i].kv.ModRevision > after })
	revs, bytes := 0, 0
	last := int64(0)
	for ; i < len(h); i++ {
		v := h[i]
		if v.kv.ModRevision != last {
			if revs == maxRevs || (revs > 0 && bytes >= maxBytes) {
				c.UpTo, c.Complete = last, false
				break
			}
			revs++
			last = v.kv.ModRevision
		}
		bytes += len(v.kv.Key) + len(v.kv.Value)
		c.Changes = append(c.Changes, Change{KV: v.kv, Sub: v.sub, Deleted: v.tombstone()})
	}
	if leaseVersion != s.leaseVersion {
		c.Leases = make([]LeaseInfo, 0, len(s.leases))
		for _, l := range s.leases {
			c.Leases = append(c.Leases, LeaseInfo{ID: l.id, TTL: l.ttl})
		}
		sort.Slice(c.Leases, func(i, j int) bool { return c.Leases[i].ID < c.Leases[j].ID })
	}
	return c, nil
}
