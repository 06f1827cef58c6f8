package sqlsink

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"

	"github.com/go-sql-driver/mysql"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// OpenReadOnly opens a database for inspection: no migrations, no writes.
func OpenReadOnly(cfg Config) (*Sink, error) {
	s := &Sink{cfg: cfg, log: slog.New(slog.DiscardHandler), progress: make(chan struct{})}
	var err error
	if cfg.MySQLDSN != "" {
		if _, err := mysql.ParseDSN(cfg.MySQLDSN); err != nil {
			return nil, fmt.Errorf("sqlsink: MySQL DSN: %w", err)
		}
		s.d = mysqlDialect{}
		s.db, err = sql.Open("mysql", cfg.MySQLDSN)
	} else {
		s.d = sqliteDialect{}
		s.db, err = sql.Open("sqlite", sqliteDSN(cfg.SQLitePath)+"&mode=ro")
	}
	if err != nil {
		return nil, fmt.Errorf("sqlsink: open %s: %w", cfg.Redacted(), err)
	}
	return s, nil
}

// CompareKVs lists the differences between the database's current rows and
// a member's key-values (both in key order).
func CompareKVs(db, member []*mvccpb.KeyValue) []string {
	var diffs []string
	i, j := 0, 0
	for i < len(db) || j < len(member) {
		switch {
		case j == len(member) || (i < len(db) && bytes.Compare(db[i].Key, member[j].Key) < 0):
			diffs = append(diffs, fmt.Sprintf("key %q: in the database (mod_revision %d), not on the member", db[i].Key, db[i].ModRevision))
			i++
		case i == len(db) || bytes.Compare(db[i].Key, member[j].Key) > 0:
			diffs = append(diffs, fmt.Sprintf("key %q: on the member (mod_revision %d), not in the database", member[j].Key, member[j].ModRevision))
			j++
		default:
			a, b := db[i], member[j]
			if !bytes.Equal(a.Value, b.Value) || a.CreateRevision != b.CreateRevision || a.ModRevision != b.ModRevision ||
				a.Version != b.Version || a.Lease != b.Lease {
				diffs = append(diffs, fmt.Sprintf("key %q: database create/mod/version/lease %d/%d/%d/%x value %d bytes; member %d/%d/%d/%x value %d bytes",
					a.Key, a.CreateRevision, a.ModRevision, a.Version, a.Lease, len(a.Value), b.CreateRevision, b.ModRevision, b.Version, b.Lease, len(b.Value)))
			}
			i++
			j++
		}
	}
	return diffs
}

// CheckHistory lists revisions after the compact revision, up to the
// high-water mark, that have no history row (every revision changes at
// least one key), and history rows above the high-water mark.
func (s *Sink) CheckHistory(ctx context.Context) ([]string, error) {
	st, err := s.State(ctx)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT DISTINCT revision FROM kv_log WHERE revision > ? ORDER BY revision", max(st.CompactRev, 1))
	if err != nil {
		return nil, fmt.Errorf("sqlsink: read history: %w", err)
	}
	defer rows.Close()
	var diffs []string
	next := max(st.CompactRev, 1) + 1
	for rows.Next() {
		var rev int64
		if err := rows.Scan(&rev); err != nil {
			return nil, err
		}
		if rev > st.Revision {
			diffs = append(diffs, fmt.Sprintf("history row at revision %d above the high-water mark %d", rev, st.Revision))
			continue
		}
		for ; next < rev; next++ {
			diffs = append(diffs, fmt.Sprintf("revision %d: no history row", next))
		}
		next = rev + 1
	}
	for ; next <= st.Revision; next++ {
		diffs = append(diffs, fmt.Sprintf("revision %d: no history row", next))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Below the compact revision only the version each key had at it may
	// remain: no deletion, nothing superseded at or below it.
	q := "SELECT revision, " + s.d.q("key") + " FROM kv_log l WHERE l.revision < ? AND (l.deleted = 1 OR EXISTS (SELECT 1 FROM kv_log n WHERE n." +
		s.d.q("key") + " = l." + s.d.q("key") + " AND (n.revision > l.revision OR (n.revision = l.revision AND n.sub > l.sub)) AND n.revision <= ?))" +
		" ORDER BY revision LIMIT 100"
	stale, err := s.db.QueryContext(ctx, q, st.CompactRev, st.CompactRev)
	if err != nil {
		return nil, fmt.Errorf("sqlsink: read history: %w", err)
	}
	defer stale.Close()
	for stale.Next() {
		var rev int64
		var key []byte
		if err := stale.Scan(&rev, &key); err != nil {
			return nil, err
		}
		diffs = append(diffs, fmt.Sprintf("history row %q at revision %d: compacted away, still stored", key, rev))
	}
	return diffs, stale.Err()
}
