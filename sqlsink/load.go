package sqlsink

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// LoadInto replaces the store's state with the database's: the retained
// history (kv_log mirrors every version the store retains), the leases and
// the revisions. It is how a member with no raft state starts over a
// database that already holds a cluster's data.
func (s *Sink) LoadInto(ctx context.Context, store *fsm.Store) (State, error) {
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
	if err := store.Load(max(st.Revision, 1), st.CompactRev, leases, changes); err != nil {
		return st, err
	}
	s.sunkRev.Store(st.Revision)
	s.sunkIndex.Store(0)
	return st, nil
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
