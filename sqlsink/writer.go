package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/etcdsql/etcdsql/fsm"
)

// Check verifies, before a leader's sink writes anything, that the
// database can follow this member: not fenced by a newer term, not ahead of
// the store, not behind the store's retained history. Transient failures
// (the database is unreachable) are retried until ctx ends; the errors it
// returns (ErrFenced, ErrAhead, ErrGap) need an operator.
func (s *Sink) Check(ctx context.Context, store *fsm.Store, term uint64) (State, error) {
	backoff := s.cfg.RetryMin
	for {
		st, err := s.State(ctx)
		if err == nil {
			if st.LeaderTerm > term {
				return st, fmt.Errorf("%w: database fenced at term %d, this leader has %d", ErrFenced, st.LeaderTerm, term)
			}
			if cur := store.Rev(); st.Revision > cur {
				return st, fmt.Errorf("%w: database at revision %d, this member at %d: remove the member's data dir to rebuild it from the database",
					ErrAhead, st.Revision, cur)
			}
			// The store's history starts at its compact revision.
			if _, compact := store.Revs(); st.Revision+1 < compact {
				return st, fmt.Errorf("%w: database at revision %d, this member's history starts at %d: restore the database from a backup taken after that revision, or rebuild the cluster from this database",
					ErrGap, st.Revision, compact)
			}
			return st, nil
		}
		s.setHealth(err)
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.RetryMax)
	}
}

// Run writes the store's revisions to the database, in order, from the
// high-water mark on, until ctx ends or a newer leader fences it off. Only
// the leader runs it, with its raft term, after Check passed. Failed
// batches are retried with backoff; meanwhile Healthy reports the failure
// so that writes are refused before they reach raft.
func (s *Sink) Run(ctx context.Context, store *fsm.Store, term uint64) error {
	s.checked.Store(false)
	st, err := s.Check(ctx, store, term)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.setHealth(err)
		return err
	}
	s.checked.Store(true)
	s.sunkRev.Store(st.Revision)
	s.log.Info("sink started", "rev", st.Revision, "term", term)
	var leaseVersion uint64 // 0: leases are written on the first batch
	dbCompact := st.CompactRev
	backoff := s.cfg.RetryMin
	probe := time.NewTicker(s.cfg.ProbeInterval)
	defer probe.Stop()
	var w *writer // the leader's own session; a new one after an error
	defer func() { w.close() }()
	for {
		wait := store.AppliedWait()
		ch, err := store.ChangesSince(s.sunkRev.Load(), s.cfg.MaxBatchRevisions, leaseVersion)
		if errors.Is(err, fsm.ErrCompacted) {
			err = fmt.Errorf("%w: database at revision %d, history starts at %d: restore the database from a backup taken after that revision, or rebuild the cluster from this database",
				ErrGap, s.sunkRev.Load(), ch.CompactRev)
			s.setHealth(err)
			return err
		}
		idle := len(ch.Changes) == 0 && ch.Leases == nil && ch.CompactRev <= dbCompact && ch.AppliedIndex <= s.sunkIndex.Load()
		if idle {
			select {
			case <-ctx.Done():
				return nil
			case <-wait:
			case <-probe.C:
				s.probe(ctx)
			}
			continue
		}
		start := time.Now()
		if w == nil {
			w, err = s.openWriter(ctx)
		}
		if err == nil {
			err = s.writeBatch(ctx, w, ch, dbCompact, term)
		}
		s.metrics.observeBatch(len(ch.Changes), time.Since(start), err)
		if errors.Is(err, ErrFenced) {
			s.setHealth(err)
			return err
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			w.close()
			w = nil
			if isLockWait(err) && s.evictWriter(ctx) {
				continue // retry at once: the lock is free
			}
			s.setHealth(err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, s.cfg.RetryMax)
			continue
		}
		backoff = s.cfg.RetryMin
		if ch.Leases != nil && ch.Complete {
			leaseVersion = ch.LeaseVersion
		}
		if ch.CompactRev <= ch.UpTo {
			dbCompact = max(dbCompact, ch.CompactRev)
		}
		s.sunkRev.Store(ch.UpTo)
		if ch.Complete {
			s.sunkIndex.Store(ch.AppliedIndex)
		}
		s.setHealth(nil)
		s.notify()
	}
}

// probe checks an idle database, so that an outage is noticed (and writes
// refused) before a write has to find out.
func (s *Sink) probe(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeInterval)
	defer cancel()
	err := s.db.PingContext(pctx)
	if ctx.Err() != nil {
		return
	}
	s.setHealth(err)
}

// writeBatch stores one read of changes in one transaction: the history
// rows, the current rows of the keys they touch, the leases if they
// changed, compaction, and the meta rows, after checking the fence.
func (s *Sink) writeBatch(ctx context.Context, w *writer, ch fsm.Changes, dbCompact int64, term uint64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlsink: begin: %w", err)
	}
	defer tx.Rollback()

	var fenced int64
	if err := tx.QueryRowContext(ctx, s.d.lockMeta(), metaLeaderTerm).Scan(&fenced); err != nil {
		return fmt.Errorf("sqlsink: read fence: %w", err)
	}
	if uint64(fenced) > term {
		return fmt.Errorf("%w: database fenced at term %d, this leader has %d", ErrFenced, fenced, term)
	}
	if uint64(fenced) < term {
		if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", int64(term), metaLeaderTerm); err != nil {
			return fmt.Errorf("sqlsink: set fence: %w", err)
		}
	}
	if !w.recorded && w.id != 0 {
		if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", w.id, metaWriterConn); err != nil {
			return fmt.Errorf("sqlsink: record writer session: %w", err)
		}
	}
	if err := s.writeLog(ctx, tx, ch.Changes); err != nil {
		return err
	}
	if err := s.writeCurrent(ctx, tx, ch.Changes); err != nil {
		return err
	}
	if ch.Leases != nil {
		if err := s.writeLeases(ctx, tx, ch.Leases, ch.Complete); err != nil {
			return err
		}
	}
	// Compaction is mirrored once the database holds the compact revision.
	if ch.CompactRev > dbCompact && ch.CompactRev <= ch.UpTo {
		stmts := s.d.compactLog()
		if _, err := tx.ExecContext(ctx, stmts[0], ch.CompactRev, ch.CompactRev); err != nil {
			return fmt.Errorf("sqlsink: compact: %w", err)
		}
		if _, err := tx.ExecContext(ctx, stmts[1], ch.CompactRev); err != nil {
			return fmt.Errorf("sqlsink: compact: %w", err)
		}
		if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", ch.CompactRev, metaCompact); err != nil {
			return fmt.Errorf("sqlsink: compact: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ? AND value < ?", ch.UpTo, metaRevision, ch.UpTo); err != nil {
		return fmt.Errorf("sqlsink: set revision: %w", err)
	}
	if ch.Complete {
		// Unconditional: raft indexes start over when a cluster is
		// rebuilt from the database, and the fence orders writers.
		if _, err := tx.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", int64(ch.AppliedIndex), metaApplied); err != nil {
			return fmt.Errorf("sqlsink: set applied index: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlsink: commit: %w", err)
	}
	w.recorded = true
	return nil
}

// writer is the leader's own database session. All its batches use it, and
// its id is recorded in meta with its first batch. A dialect without
// sessions (SQLite) writes through the pool.
type writer struct {
	db interface {
		BeginTx(context.Context, *sql.TxOptions) (*sql.Tx, error)
	}
	conn     *sql.Conn // nil: the pool
	id       int64     // 0: the dialect has no session ids
	recorded bool
}

func (w *writer) close() {
	if w != nil && w.conn != nil {
		w.conn.Close()
	}
}

func (s *Sink) openWriter(ctx context.Context) (*writer, error) {
	if s.d.sessionID() == "" {
		return &writer{db: s.db}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlsink: connect: %w", err)
	}
	w := &writer{db: conn, conn: conn}
	if q := s.d.sessionSetup(); q != "" {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			conn.Close()
			return nil, fmt.Errorf("sqlsink: session setup: %w", err)
		}
	}
	if err := conn.QueryRowContext(ctx, s.d.sessionID()).Scan(&w.id); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sqlsink: session id: %w", err)
	}
	return w, nil
}

// evictWriter ends the session of the writer recorded in meta when it
// holds the lock this leader waits for: a deposed leader, paused or cut
// off mid-transaction, would otherwise keep the fence locked (and every
// write refused) until it came back. Its transaction rolls back; the
// fence keeps it from writing again. Reports whether a session was ended.
func (s *Sink) evictWriter(ctx context.Context) bool {
	kill := s.d.killSession()
	if kill == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	var id int64
	// A plain read does not wait for the lock.
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaWriterConn).Scan(&id); err != nil || id == 0 {
		return false
	}
	if _, err := s.db.ExecContext(ctx, fmt.Sprintf(kill, id)); err != nil {
		s.log.Warn("could not end the previous writer's database session", "session", id, "err", err)
		return false
	}
	s.log.Warn("ended the previous leader's database session, which held the fence", "session", id)
	return true
}

// isLockWait reports MySQL's "lock wait timeout exceeded".
func isLockWait(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1205
}

const logCols = 8

// writeLog inserts the history rows; rows already there (a batch retried
// after a crash) are skipped.
func (s *Sink) writeLog(ctx context.Context, tx *sql.Tx, changes []fsm.Change) error {
	per := s.d.maxParams() / logCols
	for len(changes) > 0 {
		n := min(len(changes), per)
		args := make([]any, 0, n*logCols)
		for _, c := range changes[:n] {
			del := 0
			if c.Deleted {
				del = 1
			}
			args = append(args, c.KV.ModRevision, c.Sub, del, c.KV.Key, nonNil(c.KV.Value), c.KV.CreateRevision, c.KV.Version, c.KV.Lease)
		}
		q := s.d.insertIgnore("kv_log") + " (revision, sub, deleted, " + s.d.q("key") +
			", value, create_revision, version, lease) VALUES " + placeholders(n, logCols)
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("sqlsink: insert history: %w", err)
		}
		changes = changes[n:]
	}
	return nil
}

const kvCols = 6

// writeCurrent brings the kv rows of the touched keys to their last version
// in the batch. Writes never move a row backwards (mod_revision only
// grows), so replaying a batch is harmless.
func (s *Sink) writeCurrent(ctx context.Context, tx *sql.Tx, changes []fsm.Change) error {
	last := make(map[string]fsm.Change, len(changes))
	order := make([]string, 0, len(changes))
	for _, c := range changes {
		k := string(c.KV.Key)
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = c
	}
	var puts []fsm.Change
	var dels []fsm.Change
	for _, k := range order {
		if c := last[k]; c.Deleted {
			dels = append(dels, c)
		} else {
			puts = append(puts, c)
		}
	}
	per := s.d.maxParams() / kvCols
	for len(puts) > 0 {
		n := min(len(puts), per)
		args := make([]any, 0, n*kvCols)
		for _, c := range puts[:n] {
			args = append(args, c.KV.Key, nonNil(c.KV.Value), c.KV.CreateRevision, c.KV.ModRevision, c.KV.Version, c.KV.Lease)
		}
		q := "INSERT INTO kv (" + s.d.q("key") + ", value, create_revision, mod_revision, version, lease) VALUES " +
			placeholders(n, kvCols) + s.d.upsertKV()
		if _, err := tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("sqlsink: upsert current: %w", err)
		}
		puts = puts[n:]
	}
	for _, c := range dels {
		q := "DELETE FROM kv WHERE " + s.d.q("key") + " = ? AND mod_revision < ?"
		if _, err := tx.ExecContext(ctx, q, c.KV.Key, c.KV.ModRevision); err != nil {
			return fmt.Errorf("sqlsink: delete current: %w", err)
		}
	}
	return nil
}

// writeLeases stores the lease set. A batch that reaches the store's
// revision replaces the table; a partial one (a backlog draining) only adds
// leases, because the lease set it read is newer than its revisions: the
// table then holds a superset of the leases at the high-water mark, so no
// stored key refers to a missing lease.
func (s *Sink) writeLeases(ctx context.Context, tx *sql.Tx, leases []fsm.LeaseInfo, complete bool) error {
	insert := s.d.insertIgnore("leases")
	if complete {
		if _, err := tx.ExecContext(ctx, "DELETE FROM leases"); err != nil {
			return fmt.Errorf("sqlsink: leases: %w", err)
		}
		insert = "INSERT INTO leases"
	}
	per := s.d.maxParams() / 2
	for len(leases) > 0 {
		n := min(len(leases), per)
		args := make([]any, 0, 2*n)
		for _, l := range leases[:n] {
			args = append(args, l.ID, l.TTL)
		}
		if _, err := tx.ExecContext(ctx, insert+" (id, ttl) VALUES "+placeholders(n, 2), args...); err != nil {
			return fmt.Errorf("sqlsink: leases: %w", err)
		}
		leases = leases[n:]
	}
	return nil
}

// nonNil stores an empty value as an empty blob, never NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
