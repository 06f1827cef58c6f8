package sqlsink

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/etcdsql/etcdsql/fsm"
)

// Check verifies, before a leader's sink writes anything, that the
// database can follow this member: not fenced by a newer term, not ahead of
// the store, not behind the store's retained history. Transient failures
// (the database is unreachable) are retried until ctx ends; the errors it
// returns (ErrFenced, ErrAhead, ErrGap) need an operator.
func (s *Sink) Check(ctx context.Context, store EventSource, term uint64) (State, error) {
	backoff := s.cfg.RetryMin
	for {
		st, err := s.State(ctx)
		if err == nil {
			if st.LeaderTerm > term {
				return st, fmt.Errorf("%w: database fenced at term %d, this leader has %d", ErrFenced, st.LeaderTerm, term)
			}
			cur, compact := store.Revs()
			if st.ImportWipes != store.ImportWipes() {
				// An import reset the store: Run wipes the database first.
				return st, nil
			}
			if st.Revision > cur {
				return st, fmt.Errorf("%w: database at revision %d, this member at %d: remove the member's data dir to rebuild it from the database",
					ErrAhead, st.Revision, cur)
			}
			// The store's history starts at its compact revision.
			if st.Revision+1 < compact {
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
func (s *Sink) Run(ctx context.Context, store EventSource, term uint64) error {
	s.checked.Store(false)
	s.refused.Store(nil)
	defer func() {
		// Acks wait for the next run's check, or follow the database
		// (WaitIndex, woken here); what this one found refused, the
		// next leader's finds out for itself.
		s.checked.Store(false)
		s.refused.Store(nil)
		s.notify()
	}()
	st, err := s.Check(ctx, store, term)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		s.setHealth(err)
		return err
	}
	// The database says which raft entries it holds: a value read
	// earlier may belong to another raft log (a cluster rebuilt from the
	// database starts its indexes over) and would ack entries the
	// database lacks. Nothing this leader proposes is below what the
	// store had applied by now, so that bound keeps a stale value from
	// acking it.
	s.sunkRev.Store(st.Revision)
	s.sunkIndex.Store(min(st.AppliedIndex, store.AppliedIndex()))
	s.checked.Store(true)
	s.notify()
	s.log.Info("sink started", "rev", st.Revision, "term", term)
	var leaseVersion uint64 // 0: leases are written on the first batch
	var authVersion uint64  // 0: the auth store is written on the first batch, if it was ever changed
	dbCompact := st.CompactRev
	dbImport := importMeta{st.Importing, st.ImportSource, st.ImportBase}
	backoff, timeout := s.cfg.RetryMin, s.cfg.WriteTimeout
	probe := time.NewTicker(s.cfg.ProbeInterval)
	defer probe.Stop()
	var w *writer // the leader's own session; a new one after an error
	defer func() { w.close() }()
	dbWipes := st.ImportWipes
	var lastStart time.Time
	var lg linger
	for {
		wait := store.AppliedWait()
		if wipes := store.ImportWipes(); wipes != dbWipes {
			var werr error
			if w == nil {
				w, werr = s.openWriter(ctx)
			}
			if werr == nil {
				werr = s.wipe(ctx, w, wipes, term)
			}
			if werr != nil {
				if errors.Is(werr, ErrFenced) {
					s.setHealth(werr)
					return werr
				}
				if ctx.Err() != nil {
					return nil
				}
				w.close()
				w = nil
				if !s.backOff(ctx, werr, &backoff) {
					return nil
				}
				continue
			}
			s.log.Info("import reset: database wiped", "import_wipes", wipes)
			dbWipes, dbCompact, leaseVersion = wipes, -1, 0
			s.sunkRev.Store(0)
			continue
		}
		ch, err := store.ChangesSince(s.sunkRev.Load(), s.cfg.MaxBatchRevisions, s.cfg.MaxBatchBytes, leaseVersion, authVersion)
		if errors.Is(err, fsm.ErrCompacted) {
			err = fmt.Errorf("%w: database at revision %d, history starts at %d: restore the database from a backup taken after that revision, or rebuild the cluster from this database",
				ErrGap, s.sunkRev.Load(), ch.CompactRev)
			s.setHealth(err)
			return err
		}
		idle := len(ch.Changes) == 0 && ch.Leases == nil && ch.Auth == nil && ch.CompactRev <= dbCompact && ch.AppliedIndex <= s.sunkIndex.Load() &&
			importMeta{ch.Importing, ch.ImportSource, ch.ImportBase} == dbImport
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
		if s.cfg.Ack == AckAsync && ch.Complete {
			if d := s.cfg.AsyncInterval - time.Since(lastStart); d > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
				continue
			}
		}
		if p, ok := store.(Proposer); ok && s.cfg.Ack == AckSync && ch.Complete && s.cfg.SyncLinger > 0 {
			if d := lg.wait(p, s.cfg.SyncLinger, time.Now()); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil
				case <-wait: // applied more: read again
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
		s.metrics.lingered.Add(lg.release().Seconds())
		start := time.Now()
		lastStart = start
		if w == nil {
			w, err = s.openWriter(ctx)
		}
		if err == nil {
			err = s.writeBatch(ctx, w, ch, dbCompact, dbImport, term, timeout)
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
			// Retried all the same: the operator may fix the schema.
			if r := refusal(err, s.sunkRev.Load()+1, ch.UpTo); r != nil {
				err = r
				s.setRefused(r)
			}
			if isLockWait(err) && s.evictWriter(ctx) {
				continue // retry at once: the lock is free
			}
			// A batch that ran out of time against a database that
			// answers is too big for the timeout, not stuck (one
			// revision may delete many thousands of keys): the next
			// attempt gets twice as long. An unreachable database keeps
			// the short timeout, so that it is retried promptly.
			if errors.Is(err, errBatchTimeout) && s.ping(ctx) == nil {
				timeout = min(2*timeout, maxWriteTimeout)
				s.log.Warn("batch timed out against a database that answers: retrying with a longer timeout",
					"changes", len(ch.Changes), "timeout", timeout)
			}
			if !s.backOff(ctx, err, &backoff) {
				return nil
			}
			continue
		}
		backoff, timeout = s.cfg.RetryMin, s.cfg.WriteTimeout
		lg.last = time.Since(start)
		if ch.Leases != nil && ch.Complete {
			leaseVersion = ch.LeaseVersion
		}
		if ch.Auth != nil {
			authVersion = ch.AuthVersion
		}
		if ch.CompactRev <= ch.UpTo {
			dbCompact = max(dbCompact, ch.CompactRev)
		}
		dbImport = importMeta{ch.Importing, ch.ImportSource, ch.ImportBase}
		s.sunkRev.Store(ch.UpTo)
		if ch.Complete {
			s.sunkIndex.Store(ch.AppliedIndex)
		}
		s.setRefused(nil)
		s.setHealth(nil)
		s.notify()
	}
}

// linger holds a sync batch back while the entries proposed before it
// would have started are still on their way to the store, at most
// Config.SyncLinger and never longer than the last batch took (waiting
// longer than a commit costs buys nothing).
type linger struct {
	began  time.Time     // when the hold began
	until  time.Time     // when to start the batch regardless; zero: not holding one back
	target uint64        // the settled count that covers what was proposed at began
	last   time.Duration // how long the last batch took
}

// wait returns how much longer to hold the batch back; 0: start it now.
func (l *linger) wait(p Proposer, most time.Duration, now time.Time) time.Duration {
	proposed, settled := p.Proposals()
	if l.until.IsZero() {
		if settled >= proposed {
			return 0
		}
		l.began, l.target, l.until = now, proposed, now.Add(min(most, l.last))
	}
	if settled >= l.target || !now.Before(l.until) {
		return 0
	}
	return l.until.Sub(now)
}

// release ends the hold as the batch starts and returns how long it was
// held back.
func (l *linger) release() time.Duration {
	if l.until.IsZero() {
		return 0
	}
	held := time.Since(l.began)
	l.began, l.until = time.Time{}, time.Time{}
	return held
}

// backOff reports a failed write, waits out the backoff and doubles it (up
// to RetryMax); false when ctx ended meanwhile.
func (s *Sink) backOff(ctx context.Context, err error, backoff *time.Duration) bool {
	s.setHealth(err)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*backoff):
	}
	*backoff = min(2*(*backoff), s.cfg.RetryMax)
	return true
}

// maxWriteTimeout bounds how long the timeout of a batch grows.
const maxWriteTimeout = 5 * time.Minute

var errBatchTimeout = errors.New("sqlsink: batch timed out")

// ping asks the database to answer within a probe interval.
func (s *Sink) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeInterval)
	defer cancel()
	return s.db.PingContext(pctx)
}

// probe checks an idle database, so that an outage is noticed (and writes
// refused) before a write has to find out.
func (s *Sink) probe(ctx context.Context) {
	err := s.ping(ctx)
	if ctx.Err() != nil {
		return
	}
	s.setHealth(err)
}

// writeBatch stores one read of changes in one transaction: the history
// rows, the current rows of the keys they touch, the leases and the auth
// store if they changed, compaction, and the meta rows, after checking the fence.
func (s *Sink) writeBatch(ctx context.Context, w *writer, ch fsm.Changes, dbCompact int64, dbImport importMeta, term uint64, timeout time.Duration) (err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer func() {
		if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w after %v: %w", errBatchTimeout, timeout, err)
		}
	}()
	var sc script
	if !w.recorded && w.id != 0 {
		sc.add("record writer session", setMeta, w.id, metaWriterConn)
	}
	s.writeLog(&sc, ch.Changes)
	s.writeCurrent(&sc, ch.Changes)
	if ch.Leases != nil {
		s.writeLeases(&sc, ch.Leases, ch.Complete)
	}
	// The auth tables exist once a user or role has been written; a store
	// that never had one writes none.
	if ch.Auth != nil && (!ch.Auth.Empty() || s.authTables.Load()) {
		if err := s.ensureAuthTables(ctx); err != nil {
			return err
		}
		s.writeAuth(&sc, ch.Auth)
	}
	// Compaction is mirrored once the database holds the compact revision.
	if ch.CompactRev > dbCompact && ch.CompactRev <= ch.UpTo {
		stmts := s.d.compactLog()
		sc.add("compact", stmts[0], ch.CompactRev, ch.CompactRev)
		sc.add("compact", stmts[1], ch.CompactRev)
		sc.add("compact", setMeta, ch.CompactRev, metaCompact)
	}
	if now := (importMeta{ch.Importing, ch.ImportSource, ch.ImportBase}); now != dbImport {
		s.writeImport(&sc, now)
	}
	sc.add("set revision", "UPDATE meta SET value = ? WHERE name = ? AND value < ?", ch.UpTo, metaRevision, ch.UpTo)
	if ch.Complete {
		// Unconditional: raft indexes start over when a cluster is
		// rebuilt from the database, and the fence orders writers.
		sc.add("set applied index", setMeta, int64(ch.AppliedIndex), metaApplied)
	}
	if err := w.run(ctx, term, sc); err != nil {
		return err
	}
	w.recorded = true
	return nil
}

// stmt is one statement of a batch.
type stmt struct {
	what string // for errors
	q    string
	args []any
	size int // an upper bound of its bytes on the wire
}

// script is the statements a batch runs after its fence check, in order.
type script []stmt

// argBytes bounds the bytes an argument takes in a statement: bytes may be
// escaped one for one, and quoted.
func argBytes(a any) int {
	switch v := a.(type) {
	case []byte:
		return 2*len(v) + 12
	case string:
		return 2*len(v) + 2
	}
	return 21
}

func (sc *script) add(what, q string, args ...any) {
	size := len(q)
	for _, a := range args {
		size += argBytes(a)
	}
	*sc = append(*sc, stmt{what: what, q: q, args: args, size: size})
}

// addRows adds "head (?,...),(?,...) tail" over rows (each a list of cols
// column values) as few statements as the dialect's limits (rows per
// statement, placeholders) and maxStatementBytes allow.
func (sc *script) addRows(what, head, tail string, cols int, d dialect, rows func(yield func([]any))) {
	maxParams, maxRows := d.maxParams(), d.rowsPerStatement()
	var args []any
	n, size := 0, 0
	flush := func() {
		switch {
		case n == 0:
		case d.fixedRows() && n != maxRows:
			one := head + placeholders(1, cols) + tail
			for i := 0; i < n; i++ {
				sc.add(what, one, args[i*cols:(i+1)*cols]...)
			}
		default:
			sc.add(what, head+placeholders(n, cols)+tail, args...)
		}
		args, n, size = nil, 0, 0
	}
	rows(func(row []any) {
		rowSize := 0
		for _, a := range row {
			rowSize += argBytes(a)
		}
		if n > 0 && ((n+1)*cols > maxParams || size+rowSize > maxStatementBytes || n == maxRows) {
			flush()
		}
		args = append(args, row...)
		n++
		size += rowSize
	})
	flush()
}

// maxStatementBytes bounds a statement (and, on MySQL, a round trip of
// several) well below MySQL's smallest default max_allowed_packet (4 MiB);
// one row larger than that still goes alone.
const maxStatementBytes = 3 << 20

// writer is the leader's own database session. All its batches use it, and
// its id is recorded in meta with its first batch. A dialect without
// sessions (SQLite) writes through the pool.
type writer struct {
	pool     *sql.DB              // SQLite: the pool
	stmts    map[string]*sql.Stmt // SQLite: statements prepared on the pool, by text
	conn     *sql.Conn            // MySQL: the own session, which takes several statements per round trip
	id       int64                // 0: the dialect has no session ids
	recorded bool
	broken   bool // a batch failed on conn: a transaction may be open on it
}

func (w *writer) close() {
	if w == nil {
		return
	}
	for _, st := range w.stmts {
		st.Close()
	}
	w.stmts = nil
	if w.conn == nil {
		return
	}
	if w.broken {
		// Discard the session rather than return it to the pool: the
		// server rolls back whatever it left open.
		w.conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	w.conn.Close()
}

func (s *Sink) openWriter(ctx context.Context) (*writer, error) {
	if s.wdb == nil {
		return &writer{pool: s.db}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("sqlsink: connect: %w", err)
	}
	w := &writer{conn: conn}
	if q := s.d.sessionSetup(); q != "" {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			w.broken = true
			w.close()
			return nil, fmt.Errorf("sqlsink: session setup: %w", err)
		}
	}
	if err := conn.QueryRowContext(ctx, s.d.sessionID()).Scan(&w.id); err != nil {
		w.broken = true
		w.close()
		return nil, fmt.Errorf("sqlsink: session id: %w", err)
	}
	return w, nil
}

// run checks the fence and runs sc in one transaction.
func (w *writer) run(ctx context.Context, term uint64, sc script) error {
	if w.conn != nil {
		err := w.runJoined(ctx, term, sc)
		if err != nil {
			w.broken = true
		}
		return err
	}
	// Prepared before the transaction takes the pool's one connection.
	if len(w.stmts) > maxPrepared {
		for _, st := range w.stmts {
			st.Close()
		}
		w.stmts = nil
	}
	for _, q := range []string{readFence, setMeta} {
		if _, err := w.prepared(ctx, q); err != nil {
			return fmt.Errorf("sqlsink: prepare: %w", err)
		}
	}
	for _, st := range sc {
		if _, err := w.prepared(ctx, st.q); err != nil {
			return fmt.Errorf("sqlsink: prepare: %w", err)
		}
	}
	tx, err := w.pool.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlsink: begin: %w", err)
	}
	defer tx.Rollback()
	var fenced int64
	if err := tx.StmtContext(ctx, w.stmts[readFence]).QueryRowContext(ctx, metaLeaderTerm).Scan(&fenced); err != nil {
		return fmt.Errorf("sqlsink: read fence: %w", err)
	}
	if sc, err = withFence(sc, fenced, term); err != nil {
		return err
	}
	for _, st := range sc {
		if _, err := tx.StmtContext(ctx, w.stmts[st.q]).ExecContext(ctx, st.args...); err != nil {
			return fmt.Errorf("sqlsink: %s: %w", st.what, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlsink: commit: %w", err)
	}
	return nil
}

// prepared returns q prepared on the pool, preparing it the first time.
// The shapes are few (inserts of 32 rows or one on SQLite), but the cache is
// bounded all the same: run starts it over past maxPrepared.
func (w *writer) prepared(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	if w.stmts == nil {
		w.stmts = make(map[string]*sql.Stmt)
	}
	st, err := w.pool.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

// maxPrepared bounds the statements a writer keeps prepared; more than
// one batch's worth, so a batch's statements stay prepared while it runs.
const maxPrepared = 256

// setMeta sets one meta row.
const setMeta = "UPDATE meta SET value = ? WHERE name = ?"

// runJoined is run on a session that takes several statements at once:
// one round trip opens the transaction, takes the fence and sends every
// statement and the commit (more round trips only when the statements
// exceed maxStatementBytes). Under load most of a batch's time on a busy
// machine is spent waiting for round trips, not in the rows.
//
// The fence is raised to term unless it is above it (which locks its row
// until the commit), then checked: above term, the check's insert collides
// with the fence's own row, and the statements end there.
func (w *writer) runJoined(ctx context.Context, term uint64, sc script) error {
	var q strings.Builder
	q.WriteString("START TRANSACTION; " + raiseFence + "; " + checkFence + ";")
	args := []any{metaLeaderTerm, int64(term), metaLeaderTerm, int64(term)}
	size := q.Len()
	send := func() error {
		_, err := w.conn.ExecContext(ctx, q.String(), args...)
		q.Reset()
		args, size = nil, 0
		return err
	}
	first := true
	for _, st := range sc {
		if size > 0 && size+st.size > maxStatementBytes {
			if err := send(); err != nil {
				return w.batchError(ctx, first, term, err)
			}
			first = false
		}
		q.WriteString(st.q)
		q.WriteString(";")
		args = append(args, st.args...)
		size += st.size
	}
	q.WriteString("COMMIT")
	if err := send(); err != nil {
		return w.batchError(ctx, first, term, err)
	}
	return nil
}

// The fence statements of runJoined.
const (
	raiseFence = "INSERT INTO meta (name, value) VALUES (?, ?) ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))"
	checkFence = "INSERT INTO meta (name, value) SELECT name, value FROM meta WHERE name = ? AND value > ?"
)

// batchError is the error of a round trip of runJoined: ErrFenced when the
// fence check refused the batch (the first round trip, a duplicate of the
// fence's row), read back from the still open transaction.
func (w *writer) batchError(ctx context.Context, first bool, term uint64, err error) error {
	var me *mysql.MySQLError
	if !first || !errors.As(err, &me) || me.Number != 1062 || !strings.Contains(me.Message, "'"+metaLeaderTerm+"'") {
		return fmt.Errorf("sqlsink: write batch: %w", err)
	}
	var fenced int64
	if rerr := w.conn.QueryRowContext(ctx, readFence, metaLeaderTerm).Scan(&fenced); rerr != nil {
		return fmt.Errorf("%w: database fenced above this leader's term %d (reading it: %v)", ErrFenced, term, rerr)
	}
	return fmt.Errorf("%w: database fenced at term %d, this leader has %d", ErrFenced, fenced, term)
}

// readFence reads a meta row (the fence, in a transaction).
const readFence = "SELECT value FROM meta WHERE name = ?"

// withFence fails with ErrFenced when the database's fence is above term,
// and otherwise returns sc, first raising the fence to term if it is below.
func withFence(sc script, fenced int64, term uint64) (script, error) {
	switch {
	case uint64(fenced) > term:
		return nil, fmt.Errorf("%w: database fenced at term %d, this leader has %d", ErrFenced, fenced, term)
	case uint64(fenced) < term:
		var raise script
		raise.add("set fence", setMeta, int64(term), metaLeaderTerm)
		return append(raise, sc...), nil
	}
	return sc, nil
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
func (s *Sink) writeLog(sc *script, changes []fsm.Change) {
	head := s.d.insertIgnore("kv_log") + " (revision, sub, deleted, " + s.d.q("key") +
		", value, create_revision, version, lease) VALUES "
	sc.addRows("insert history", head, "", logCols, s.d, func(yield func([]any)) {
		for _, c := range changes {
			del := 0
			if c.Deleted {
				del = 1
			}
			yield([]any{c.KV.ModRevision, c.Sub, del, c.KV.Key, nonNil(c.KV.Value), c.KV.CreateRevision, c.KV.Version, c.KV.Lease})
		}
	})
}

const kvCols = 6

// writeCurrent brings the kv rows of the touched keys to their last version
// in the batch. Writes never move a row backwards (mod_revision only
// grows), so replaying a batch is harmless.
func (s *Sink) writeCurrent(sc *script, changes []fsm.Change) {
	last := make(map[string]fsm.Change, len(changes))
	order := make([]string, 0, len(changes))
	for _, c := range changes {
		k := string(c.KV.Key)
		if _, seen := last[k]; !seen {
			order = append(order, k)
		}
		last[k] = c
	}
	head := "INSERT INTO kv (" + s.d.q("key") + ", value, create_revision, mod_revision, version, lease) VALUES "
	sc.addRows("upsert current", head, s.d.upsertKV(), kvCols, s.d, func(yield func([]any)) {
		for _, k := range order {
			if c := last[k]; !c.Deleted {
				yield([]any{c.KV.Key, nonNil(c.KV.Value), c.KV.CreateRevision, c.KV.ModRevision, c.KV.Version, c.KV.Lease})
			}
		}
	})
	// Each key only below its deletion, so that replaying a batch never
	// deletes a newer version. One statement per key: SQLite plans a long
	// OR of keys far worse, and MySQL gets them all in one round trip.
	for _, k := range order {
		if c := last[k]; c.Deleted {
			sc.add("delete current", "DELETE FROM kv WHERE "+s.d.q("key")+" = ? AND mod_revision < ?", c.KV.Key, c.KV.ModRevision)
		}
	}
}

// writeLeases stores the lease set. A batch that reaches the store's
// revision replaces the table; a partial one (a backlog draining) only adds
// leases, because the lease set it read is newer than its revisions: the
// table then holds a superset of the leases at the high-water mark, so no
// stored key refers to a missing lease.
func (s *Sink) writeLeases(sc *script, leases []fsm.LeaseInfo, complete bool) {
	insert := s.d.insertIgnore("leases")
	if complete {
		sc.add("leases", "DELETE FROM leases")
		insert = "INSERT INTO leases"
	}
	sc.addRows("leases", insert+" (id, ttl) VALUES ", "", 2, s.d, func(yield func([]any)) {
		for _, l := range leases {
			yield([]any{l.ID, l.TTL})
		}
	})
}

// nonNil stores an empty value as an empty blob, never NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// importMeta is the import mode as the meta rows record it.
type importMeta struct {
	importing bool
	source    uint64
	base      int64
}

// writeImport records the store's import mode in meta, creating its rows
// the first time.
func (s *Sink) writeImport(sc *script, m importMeta) {
	mode := 0
	if m.importing {
		mode = 1
	}
	for _, row := range []struct {
		name  string
		value int64
	}{{metaImportMode, int64(mode)}, {metaImportSource, int64(m.source)}, {metaImportBase, m.base}} {
		sc.add("record import", s.d.insertIgnore("meta")+" (name, value) VALUES (?, 0)", row.name)
		sc.add("record import", "UPDATE meta SET value = ? WHERE name = ?", row.value, row.name)
	}
}

// wipe mirrors an import reset: every key, history row and lease goes, the
// revisions start over, and the count of resets is recorded, in one
// transaction after the fence check.
func (s *Sink) wipe(ctx context.Context, w *writer, wipes uint64, term uint64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	var sc script
	sc.add("wipe", "DELETE FROM kv")
	sc.add("wipe", "DELETE FROM kv_log")
	sc.add("wipe", "DELETE FROM leases")
	sc.add("wipe", "UPDATE meta SET value = 0 WHERE name = ?", metaRevision)
	sc.add("wipe", "UPDATE meta SET value = -1 WHERE name = ?", metaCompact)
	sc.add("wipe", s.d.insertIgnore("meta")+" (name, value) VALUES (?, 0)", metaImportWipes)
	sc.add("wipe", "UPDATE meta SET value = ? WHERE name = ?", int64(wipes), metaImportWipes)
	return w.run(ctx, term, sc)
}
