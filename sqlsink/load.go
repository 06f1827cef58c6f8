package sqlsink

import (
	"context"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// LoadInto replaces the store's state with the database's: the retained
// history (kv_log mirrors every version the store retains), the leases,
// the users and roles, and the revisions. It is how a member with no raft state starts over a
// database that already holds a cluster's data.
func (s *Sink) LoadInto(ctx context.Context, store Loader) (State, error) {
	st, err := s.State(ctx)
	if err != nil {
		return st, err
	}
	var leases []fsm.LeaseInfo
	rows, err := s.db.QueryContext(ctx, "SELECT id, ttl FROM leases ORDER BY id")
	if err != nil {
		return st, fmt.Errorf("sqlsink: load leases: %w", err)
	}
	for rows.Next() {
		var l fsm.LeaseInfo
		if err := rows.Scan(&l.ID, &l.TTL); err != nil {
			rows.Close()
			return st, fmt.Errorf("sqlsink: load leases: %w", err)
		}
		leases = append(leases, l)
	}
	rows.Close()
	changes, err := s.history(ctx, 0)
	if err != nil {
		return st, err
	}
	leases = s.repairLeases(leases, changes, store.MinLeaseTTL())
	auth, err := s.loadAuth(ctx)
	if err != nil {
		return st, err
	}
	if err := store.Load(max(st.Revision, 1), st.CompactRev, leases, changes, auth); err != nil {
		return st, err
	}
	store.LoadImport(st.Importing, st.ImportSource, st.ImportBase, st.ImportWipes)
	// The raft log starts over: the database's applied index belongs to
	// the old one, and would ack new writes before they are stored.
	if _, err := s.db.ExecContext(ctx, "UPDATE meta SET value = 0 WHERE name = ?", metaApplied); err != nil {
		return st, fmt.Errorf("sqlsink: reset applied index: %w", err)
	}
	s.sunkRev.Store(st.Revision)
	s.sunkIndex.Store(0)
	return st, nil
}

// repairLeases adds the leases that live keys refer to but the table lacks.
// That happens when the database stopped in the middle of a backlog whose
// lease set it had already read: such a lease was revoked after the
// database's revision, so it gets the shortest TTL the store grants
// (minTTL), and its keys go soon, as they did on the old cluster.
func (s *Sink) repairLeases(leases []fsm.LeaseInfo, changes []fsm.Change, minTTL int64) []fsm.LeaseInfo {
	have := make(map[int64]bool, len(leases))
	for _, l := range leases {
		have[l.ID] = true
	}
	last := make(map[string]fsm.Change)
	for _, c := range changes {
		last[string(c.KV.Key)] = c
	}
	missing := make(map[int64]bool)
	for _, c := range last {
		if !c.Deleted && c.KV.Lease != 0 && !have[c.KV.Lease] {
			missing[c.KV.Lease] = true
		}
	}
	for id := range missing {
		s.log.Warn("a stored key refers to a lease the database lacks: granting it the shortest TTL", "lease_id", id)
		leases = append(leases, fsm.LeaseInfo{ID: id, TTL: minTTL})
	}
	sort.Slice(leases, func(i, j int) bool { return leases[i].ID < leases[j].ID })
	return leases
}

// history reads kv_log rows with a revision above after, in order.
func (s *Sink) history(ctx context.Context, after int64) ([]fsm.Change, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT revision, sub, deleted, "+s.d.q("key")+
		", value, create_revision, version, lease FROM kv_log WHERE revision > ? ORDER BY revision, sub", after)
	if err != nil {
		return nil, fmt.Errorf("sqlsink: load history: %w", err)
	}
	defer rows.Close()
	var out []fsm.Change
	for rows.Next() {
		var c fsm.Change
		var del int
		kv := &mvccpb.KeyValue{}
		if err := rows.Scan(&kv.ModRevision, &c.Sub, &del, &kv.Key, &kv.Value, &kv.CreateRevision, &kv.Version, &kv.Lease); err != nil {
			return nil, fmt.Errorf("sqlsink: load history: %w", err)
		}
		c.Deleted = del != 0
		if c.Deleted {
			kv = &mvccpb.KeyValue{Key: kv.Key, ModRevision: kv.ModRevision}
		} else if len(kv.Value) == 0 {
			kv.Value = nil
		}
		c.KV = kv
		out = append(out, c)
	}
	return out, rows.Err()
}

// Current reads the kv table in key order.
func (s *Sink) Current(ctx context.Context) ([]*mvccpb.KeyValue, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT "+s.d.q("key")+", value, create_revision, mod_revision, version, lease FROM kv ORDER BY "+s.d.q("key"))
	if err != nil {
		return nil, fmt.Errorf("sqlsink: read kv: %w", err)
	}
	defer rows.Close()
	var out []*mvccpb.KeyValue
	for rows.Next() {
		kv := &mvccpb.KeyValue{}
		if err := rows.Scan(&kv.Key, &kv.Value, &kv.CreateRevision, &kv.ModRevision, &kv.Version, &kv.Lease); err != nil {
			return nil, fmt.Errorf("sqlsink: read kv: %w", err)
		}
		if len(kv.Value) == 0 {
			kv.Value = nil
		}
		out = append(out, kv)
	}
	return out, rows.Err()
}
