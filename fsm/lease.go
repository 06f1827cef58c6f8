package fsm

import (
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// lease is the replicated part of a lease: its granted TTL and the keys
// attached to it. When it expires is the leader's business (node.Lessor):
// expiry arrives here as a revoke.
type lease struct {
	id  int64
	ttl int64
	// grantIndex is the raft index that granted it: a lease revoked and
	// granted again under the same ID is told apart by it.
	grantIndex uint64
	// remaining is the seconds an imported lease had left at its source
	// (0: the full TTL): the leader's clock starts it from there.
	remaining int64
	keys      map[string]struct{}
}

// LeaseInfo describes one lease.
type LeaseInfo struct {
	ID         int64
	TTL        int64  // granted TTL in seconds
	GrantIndex uint64 // raft index of the grant (0 when loaded from SQL)
	// Remaining is the seconds an imported lease had left at its source
	// when the leader's clock starts it (0: the full TTL).
	Remaining int64
	Keys      [][]byte
}

func (s *Store) attach(id int64, key []byte) {
	if id == 0 {
		return
	}
	if l, ok := s.leases[id]; ok {
		l.keys[string(key)] = struct{}{}
	}
}

func (s *Store) detach(id int64, key []byte) {
	if id == 0 {
		return
	}
	if l, ok := s.leases[id]; ok {
		delete(l.keys, string(key))
	}
}

func (s *Store) leaseGrant(idx uint64, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if r.ID == 0 {
		// The proposer picks the ID before replication; zero here is a bug.
		return nil, ErrLeaseNotFound
	}
	if _, ok := s.leases[r.ID]; ok {
		return nil, ErrLeaseExists
	}
	ttl := r.TTL
	if ttl < s.cfg.MinLeaseTTL {
		ttl = s.cfg.MinLeaseTTL
	}
	s.leases[r.ID] = &lease{id: r.ID, ttl: ttl, grantIndex: idx, keys: make(map[string]struct{})}
	s.leaseVersion++
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: s.rev}, ID: r.ID, TTL: ttl}, nil
}

// leaseRevoke deletes the lease and, at one new revision, every key
// attached to it, in key order.
func (s *Store) leaseRevoke(id int64) (*pb.LeaseRevokeResponse, error) {
	l, ok := s.leases[id]
	if !ok {
		return nil, ErrLeaseNotFound
	}
	keys := sortedKeys(l.keys)
	w := s.newWrite()
	for _, k := range keys {
		w.deleteRange([]byte(k), nil)
	}
	delete(s.leases, id)
	s.leaseVersion++
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: w.end()}}, nil
}

func sortedKeys(m map[string]struct{}) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Lease returns one lease, with its keys in key order when withKeys is set.
// Safe for concurrent use.
func (s *Store) Lease(id int64, withKeys bool) (LeaseInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	l, ok := s.leases[id]
	if !ok {
		return LeaseInfo{}, false
	}
	info := LeaseInfo{ID: l.id, TTL: l.ttl, GrantIndex: l.grantIndex, Remaining: l.remaining}
	if withKeys {
		for _, k := range sortedKeys(l.keys) {
			info.Keys = append(info.Keys, []byte(k))
		}
	}
	return info, true
}

// Leases lists every lease, by ID, without keys. Safe for concurrent use.
func (s *Store) Leases() []LeaseInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]LeaseInfo, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, LeaseInfo{ID: l.id, TTL: l.ttl, GrantIndex: l.grantIndex, Remaining: l.remaining})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
