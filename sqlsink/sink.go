package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	_ "modernc.org/sqlite" // the embedded default
)

// MaxKeyBytes is the longest key the database stores (MySQL's limit for a
// primary key); longer keys are refused before they are proposed.
const MaxKeyBytes = 3072

// Ack modes.
const (
	// AckSync answers a write once its revision is in the database.
	AckSync = "sync"
	// AckAsync answers on raft commit; the database trails.
	AckAsync = "async"
)

// Config configures the sink.
type Config struct {
	// MySQLDSN selects MySQL/MariaDB (go-sql-driver/mysql DSN). Empty
	// selects SQLite at SQLitePath.
	MySQLDSN   string
	SQLitePath string
	// Ack is AckSync or AckAsync.
	Ack string
	// MaxBatchRevisions and MaxBatchBytes bound one SQL transaction: its
	// revisions, and the bytes of their keys and values (a transaction
	// holds at least one whole revision).
	MaxBatchRevisions int
	MaxBatchBytes     int
	// AsyncInterval, with async acks, is the least time between the
	// starts of two batches, unless more revisions wait than one batch
	// takes: the database trails by up to that much, and one transaction
	// carries all of it (what etcd does with its backend, committed every
	// 100 ms). A write after a quiet spell is written at once.
	AsyncInterval time.Duration
	// SyncLinger, with sync acks and a store that counts the leader's
	// proposals (Proposer), is the most a batch waits for the entries
	// that were proposed before it would start and are not applied yet,
	// and never longer than the last batch took: they then share its
	// commit instead of waiting one whole commit for the next. 0 starts
	// every batch at once.
	SyncLinger time.Duration
	// WriteTimeout bounds one batch (a batch that times out against a
	// database that answers gets twice as long on each retry, up to
	// 5 minutes); ProbeInterval is how often an idle
	// sink checks the database; RetryMin/RetryMax bound the backoff
	// after a failure.
	WriteTimeout  time.Duration
	ProbeInterval time.Duration
	RetryMin      time.Duration
	RetryMax      time.Duration
	Logger        *slog.Logger
	Registry      prometheus.Registerer
}

// DefaultConfig returns the defaults: SQLite, sync acks.
func DefaultConfig() Config {
	return Config{
		Ack:               AckSync,
		MaxBatchRevisions: 1000,
		MaxBatchBytes:     8 << 20,
		AsyncInterval:     100 * time.Millisecond,
		SyncLinger:        2 * time.Millisecond,
		WriteTimeout:      5 * time.Second,
		ProbeInterval:     time.Second,
		RetryMin:          50 * time.Millisecond,
		RetryMax:          2 * time.Second,
	}
}

// Validate reports a configuration the sink cannot run with.
func (c Config) Validate() error {
	if c.MySQLDSN == "" && c.SQLitePath == "" {
		return errors.New("sqlsink: neither a MySQL DSN nor a SQLite path")
	}
	if c.MySQLDSN != "" {
		if _, err := mysql.ParseDSN(c.MySQLDSN); err != nil {
			return fmt.Errorf("sqlsink: MySQL DSN: %w", err)
		}
	}
	if c.Ack != AckSync && c.Ack != AckAsync {
		return fmt.Errorf("sqlsink: ack must be %q or %q, got %q", AckSync, AckAsync, c.Ack)
	}
	if c.MaxBatchRevisions < 1 || c.MaxBatchBytes < 1 || c.AsyncInterval < 0 || c.SyncLinger < 0 || c.WriteTimeout <= 0 || c.ProbeInterval <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		return errors.New("sqlsink: batch size, timeouts and retry bounds must be positive")
	}
	return nil
}

// Redacted returns the DSN without its password, for logs.
func (c Config) Redacted() string {
	if c.MySQLDSN == "" {
		return "sqlite:" + c.SQLitePath
	}
	mc, err := mysql.ParseDSN(c.MySQLDSN)
	if err != nil {
		return "mysql:(unparsable DSN)"
	}
	mc.Passwd = ""
	return "mysql:" + mc.FormatDSN()
}

// State is what the database says about itself.
type State struct {
	ClusterID    uint64
	Revision     int64 // the high-water mark: every revision up to it is stored
	CompactRev   int64
	AppliedIndex uint64
	LeaderTerm   uint64
	// Importing and ImportSource: the store imports from the etcd
	// cluster with this ID (the meta rows import_mode, import_source,
	// which exist once a store has imported).
	Importing    bool
	ImportSource uint64
	ImportBase   int64
	ImportWipes  uint64 // the import resets the database has mirrored
}

// Meta row names.
const (
	metaSchema     = "schema_version"
	metaCluster    = "cluster_id"
	metaRevision   = "revision"
	metaCompact    = "compact_revision"
	metaApplied    = "applied_index"
	metaLeaderTerm = "leader_term"
	// metaWriterConn is the database session id of the leader's writer,
	// so that a new leader can end the session of a deposed one that
	// holds the fence's lock (a paused or cut-off process).
	metaWriterConn = "writer_connection"
	// metaImportMode and metaImportSource record an import in progress:
	// 1, the source cluster's ID and the source revision of the key
	// space (0 and the last import's once it finished). Created by the first batch that meets an import.
	metaImportMode   = "import_mode"
	metaImportSource = "import_source"
	metaImportBase   = "import_revision"
	// metaImportWipes counts the import resets mirrored (a reset wipes
	// kv, kv_log and leases); created by the first.
	metaImportWipes = "import_wipes"
)

// Sink writes the store's revisions to the database. Start it on the leader
// with Run; everything else is safe for concurrent use.
type Sink struct {
	cfg     Config
	d       dialect
	db      *sql.DB
	wdb     *sql.DB // MySQL: the writer's sessions, which join statements; nil: the writer uses db
	log     *slog.Logger
	metrics *metrics

	sunkRev   atomic.Int64
	sunkIndex atomic.Uint64
	healthErr atomic.Pointer[error]
	checked   atomic.Bool // the running sink passed Check
	// dbIndex is the database's applied index as last read by a waiter
	// while no writer of this member ran (followDatabase), at dbIndexRead
	// (Unix nanoseconds).
	dbIndex     atomic.Uint64
	dbIndexRead atomic.Int64
	refused     atomic.Pointer[error]
	// authTables: the auth tables exist (auth.go).
	authTables atomic.Bool

	mu       sync.Mutex
	progress chan struct{} // closed and replaced when sunkIndex moves, health changes or a run ends
}

// Open connects, runs the schema migrations and reads the sink's position.
func Open(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sink{cfg: cfg, log: log.With("component", "sqlsink"), progress: make(chan struct{})}
	var err error
	if cfg.MySQLDSN != "" {
		s.d = mysqlDialect{}
		s.db, err = sql.Open("mysql", cfg.MySQLDSN)
		if err == nil {
			s.db.SetMaxOpenConns(8)
			s.db.SetMaxIdleConns(8)
			s.db.SetConnMaxLifetime(5 * time.Minute)
			s.wdb, err = openJoining(cfg.MySQLDSN)
		}
	} else {
		s.d = sqliteDialect{}
		s.db, err = sql.Open("sqlite", sqliteDSN(cfg.SQLitePath))
		if err == nil {
			s.db.SetMaxOpenConns(1) // one writer; SQLite serializes anyway
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sqlsink: open %s: %w", cfg.Redacted(), err)
	}
	s.metrics = newMetrics(cfg.Registry, s)
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, err
	}
	st, err := s.State(ctx)
	if err != nil {
		s.db.Close()
		return nil, err
	}
	// Tables of an older auth schema are brought up to date by the next
	// batch that writes the auth store.
	authSchema, err := s.authSchema(ctx)
	if err != nil {
		s.db.Close()
		return nil, err
	}
	s.authTables.Store(authSchema == authSchemaVersion)
	s.sunkRev.Store(st.Revision)
	s.sunkIndex.Store(st.AppliedIndex)
	s.setHealth(nil)
	return s, nil
}

// sqliteDSN opens SQLite in WAL mode with synchronous=NORMAL: a commit
// survives a process crash at once and a power loss once checkpointed. The
// raft log, fsync'd before any write is acknowledged, covers the rest: the
// sink resumes from the database's high-water mark and rewrites whatever a
// power loss took back. The WAL is checkpointed every 10,000 pages (40 MiB
// of 4 KiB pages) rather than SQLite's 1,000: a page rewritten by many
// batches is copied into the database once per checkpoint, so under 64
// writers a member used 3.6% less CPU per put (three interleaved pairs).
func sqliteDSN(path string) string {
	q := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "synchronous(NORMAL)", "busy_timeout(5000)", "foreign_keys(0)", "cache_size(-32768)", "temp_store(MEMORY)", "wal_autocheckpoint(10000)"} {
		q.Add("_pragma", p)
	}
	return "file:" + filepath.ToSlash(path) + "?" + q.Encode()
}

// openJoining opens the writer's handle on MySQL: its sessions take several
// statements in one round trip, with arguments interpolated by the client
// (a server-side prepared statement holds one statement).
func openJoining(dsn string) (*sql.DB, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	mc.MultiStatements = true
	mc.InterpolateParams = true
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2) // one writer, and room for a discarded session's replacement
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(5 * time.Minute)
	return db, nil
}

// Close closes the database handles.
func (s *Sink) Close() error {
	if s.wdb != nil {
		s.wdb.Close()
	}
	return s.db.Close()
}

// DB exposes the handle for checks and tests.
func (s *Sink) DB() *sql.DB { return s.db }

// Ack returns the configured ack mode.
func (s *Sink) Ack() string { return s.cfg.Ack }

func (s *Sink) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	migs := s.d.migrations()
	// Migration 1 creates meta, so the version can only be read after it.
	for _, stmt := range migs[0] {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlsink: migrate to schema 1: %w", err)
		}
	}
	for _, name := range []string{metaSchema, metaCluster, metaRevision, metaApplied, metaLeaderTerm, metaWriterConn} {
		if _, err := s.db.ExecContext(ctx, s.d.insertIgnore("meta")+" (name, value) VALUES (?, 0)", name); err != nil {
			return fmt.Errorf("sqlsink: init meta: %w", err)
		}
	}
	if _, err := s.db.ExecContext(ctx, s.d.insertIgnore("meta")+" (name, value) VALUES (?, -1)", metaCompact); err != nil {
		return fmt.Errorf("sqlsink: init meta: %w", err)
	}
	var v int
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaSchema).Scan(&v); err != nil {
		return fmt.Errorf("sqlsink: read schema version: %w", err)
	}
	// schemaWithAuth is recorded by the first auth write (auth.go), not
	// by a migration here: a database that never held a user stays at the
	// first release's schema.
	if v > schemaWithAuth {
		return fmt.Errorf("sqlsink: database schema %d is newer than this binary knows (%d): upgrade etcdsql", v, schemaWithAuth)
	}
	for ; v < len(migs); v++ {
		if v > 0 {
			for _, stmt := range migs[v] {
				if _, err := s.db.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("sqlsink: migrate to schema %d: %w", v+1, err)
				}
			}
		}
		if _, err := s.db.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", v+1, metaSchema); err != nil {
			return fmt.Errorf("sqlsink: record schema %d: %w", v+1, err)
		}
	}
	return nil
}

// State reads the meta rows.
func (s *Sink) State(ctx context.Context) (State, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT name, value FROM meta")
	if err != nil {
		return State{}, fmt.Errorf("sqlsink: read meta: %w", err)
	}
	defer rows.Close()
	var st State
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return State{}, fmt.Errorf("sqlsink: read meta: %w", err)
		}
		switch name {
		case metaCluster:
			st.ClusterID = uint64(v)
		case metaRevision:
			st.Revision = v
		case metaCompact:
			st.CompactRev = v
		case metaApplied:
			st.AppliedIndex = uint64(v)
		case metaLeaderTerm:
			st.LeaderTerm = uint64(v)
		case metaImportMode:
			st.Importing = v == 1
		case metaImportSource:
			st.ImportSource = uint64(v)
		case metaImportBase:
			st.ImportBase = v
		case metaImportWipes:
			st.ImportWipes = uint64(v)
		}
	}
	return st, rows.Err()
}

// SetClusterID claims an unclaimed database for a cluster; a database
// claimed by another cluster is refused.
func (s *Sink) SetClusterID(ctx context.Context, id uint64) error {
	st, err := s.State(ctx)
	if err != nil {
		return err
	}
	switch st.ClusterID {
	case id:
		return nil
	case 0:
		_, err := s.db.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ?", int64(id), metaCluster)
		if err != nil {
			return fmt.Errorf("sqlsink: claim database: %w", err)
		}
		return nil
	}
	return fmt.Errorf("%w: database has cluster id %x, this member %x", ErrClusterMismatch, st.ClusterID, id)
}

// SunkRevision returns the high-water mark: the last revision stored.
func (s *Sink) SunkRevision() int64 { return s.sunkRev.Load() }

// Checked reports whether a running sink has passed its start checks.
func (s *Sink) Checked() bool { return s.checked.Load() }

// Healthy returns nil while the database takes writes.
func (s *Sink) Healthy() error {
	if p := s.healthErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Refused returns, while the database refuses an entry's data (an error
// wrapping ErrRefused), why; nil otherwise.
func (s *Sink) Refused() error {
	if p := s.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// setRefused records that the database refuses an entry (err wrapping
// ErrRefused) or, with nil, that it took the batch. Its one Error line
// is the log's report of the refusal, however long retries go on.
func (s *Sink) setRefused(err error) {
	var prev *error
	if err == nil {
		prev = s.refused.Swap(nil)
	} else {
		prev = s.refused.Swap(&err)
	}
	switch {
	case err != nil && prev == nil:
		s.log.Error("the database refuses an entry, and retries cannot change that: writes are refused until an operator fixes the schema", "err", err)
	case err == nil && prev != nil:
		s.log.Info("the database took the entry it refused: writes resume")
	}
}

func (s *Sink) setHealth(err error) {
	prev := s.Healthy()
	s.healthErr.Store(&err)
	if (prev == nil) != (err == nil) {
		if err != nil {
			if !errors.Is(err, ErrRefused) { // setRefused said it
				s.log.Warn("database unavailable: writes are refused", "err", err)
			}
		} else {
			s.log.Info("database available: writes resume")
		}
		s.notify()
	}
}

func (s *Sink) notify() {
	s.mu.Lock()
	close(s.progress)
	s.progress = make(chan struct{})
	s.mu.Unlock()
}

// WaitIndex waits until every entry up to raft index idx is in the
// database, as a running sink that passed its checks knows. Without one
// (leadership moved on after raft committed the entry, and this member's
// writer stopped), the database's applied index tells instead, which the
// next leader's writer raises in the batch that stores the entry: it is
// read every followInterval, by one waiter at a time.
func (s *Sink) WaitIndex(ctx context.Context, idx uint64) error {
	var follow *time.Ticker // while no writer of this member runs
	defer func() {
		if follow != nil {
			follow.Stop()
		}
	}()
	for {
		ch := s.progressChan()
		if s.checked.Load() && s.sunkIndex.Load() >= idx || s.dbIndex.Load() >= idx {
			return nil
		}
		var tick <-chan time.Time
		if !s.checked.Load() {
			if follow == nil {
				follow = time.NewTicker(followInterval)
				s.followDatabase(ctx)
				continue
			}
			tick = follow.C
		}
		select {
		case <-ch:
		case <-tick:
			s.followDatabase(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// followInterval is how often a member whose writer does not run reads the
// database's applied index while a write waits for it.
const followInterval = 20 * time.Millisecond

// followDatabase reads the database's applied index into dbIndex, unless
// another waiter read it less than followInterval ago.
func (s *Sink) followDatabase(ctx context.Context) {
	now := time.Now().UnixNano()
	last := s.dbIndexRead.Load()
	if now-last < int64(followInterval) || !s.dbIndexRead.CompareAndSwap(last, now) {
		return
	}
	var applied int64
	if err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaApplied).Scan(&applied); err == nil && applied > 0 {
		for cur := s.dbIndex.Load(); uint64(applied) > cur && !s.dbIndex.CompareAndSwap(cur, uint64(applied)); cur = s.dbIndex.Load() {
		}
	}
}

// WaitRevision waits until revision rev is in the database, or the
// database is unavailable (ErrUnhealthy).
func (s *Sink) WaitRevision(ctx context.Context, rev int64) error {
	var unhealthy bool
	err := s.waitFor(ctx, func() bool {
		unhealthy = s.Healthy() != nil
		return unhealthy || s.sunkRev.Load() >= rev
	})
	if err == nil && unhealthy && s.sunkRev.Load() < rev {
		return ErrUnhealthy
	}
	return err
}

// progressChan is the channel the next progress closes; read it before
// looking at what it announces.
func (s *Sink) progressChan() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.progress
}

func (s *Sink) waitFor(ctx context.Context, done func() bool) error {
	for {
		ch := s.progressChan()
		if done() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
